package main

import (
	"os"
	"runtime/pprof"
)

// startCPUProfile writes a CPU profile of the whole run to path (set by the
// HOPPER_CPUPROFILE environment variable, which `hopper bench -cpuprofile`
// uses); the returned function ends it.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}
