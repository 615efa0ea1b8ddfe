//go:build race

package bench

// raceEnabled: the tests run under -race, so hopper is built with -race
// too, reusing the packages the test build already compiled.
const raceEnabled = true
