package bench

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Options says what to measure and for how long. The zero value is usable:
// every zero field takes the default named in its comment.
type Options struct {
	// Duration bounds each scenario in each repetition. Zero: 2s (500ms with
	// Quick).
	Duration time.Duration
	// Reps is how many times each scenario runs; every figure is the median.
	// Zero: 3.
	Reps int
	// Quick shortens the zero-valued defaults (Duration 500ms, IdleTunnels
	// 1,000) for a fast look; explicit values still win.
	Quick bool

	// IdleTunnels is how many tunnels are held open for the memory figure.
	// Each costs the harness two descriptors (client and origin side) and the
	// proxy two. Zero: 5,000 (1,000 with Quick).
	IdleTunnels int
	// NewTunnelConcurrency is how many clients open tunnels at once in the
	// new-tunnels scenario. Zero: 32.
	NewTunnelConcurrency int
	// BulkStreams is the parallel tunnel count of the multi-stream bulk
	// scenario (the single-stream one always runs too). Zero: 8.
	BulkStreams int
	// ForwardConns is how many keep-alive connections send HTTP forward
	// requests at once. Zero: 8.
	ForwardConns int

	// HopperBin is the hopper binary to measure. Empty: build ./cmd/hopper
	// from ModuleDir into a temporary directory.
	HopperBin string
	// ModuleDir is the root of hopper's module, where hopper is built and the
	// git commit is read. Empty: the nearest directory holding go.mod, from
	// the working directory upwards.
	ModuleDir string
	// HopperArgs are extra arguments for `hopper serve`, after the ones the
	// harness sets (--listen, --log-level error, --upstreams for chained).
	HopperArgs []string
	// NoChained skips the chained-mode column (hopper through a second
	// hopper instance as its one upstream).
	NoChained bool
	// NoMITM skips the MITM column (hopper with --mitm, measured in the
	// HTTPS scenario only).
	NoMITM bool
	// Scenarios limits the run to some of "bulk", "new", "rtt", "forward",
	// "tls" and "idle" (bulk includes CPU per GiB, new CPU per 1,000
	// tunnels). Empty: all.
	Scenarios []string
	// CPUProfileDir, when set, gives every hopper process the environment
	// variable HOPPER_CPUPROFILE=<dir>/<column>-<n>.prof, for a hopper that
	// writes a CPU profile there when it exits. Pair it with Scenarios to
	// profile one kind of load.
	CPUProfileDir string

	// BareRelay is the command line of a process that serves ServeBareRelay
	// when BareRelayEnv is in its environment; any program whose main calls
	// Main does (Main sets it to its own command line). Empty: the bare
	// relay column is not run.
	BareRelay []string

	// Peers runs tinyproxy, dante and glider when their binaries are
	// found. The zero value measures hopper and direct only; peers are then
	// reported as "not run".
	Peers bool
	// LookPath finds a peer's binary. Nil: exec.LookPath plus the sbin
	// directories, /usr/bin and /usr/local/bin.
	LookPath func(name string) (string, error)

	// Logger receives debug detail (subprocess output on failure, per-run
	// figures). Nil: no logging.
	Logger *zap.Logger
}

// Defaults for the zero-valued Options fields.
const (
	DefaultDuration             = 2 * time.Second
	DefaultQuickDuration        = 500 * time.Millisecond
	DefaultReps                 = 3
	DefaultIdleTunnels          = 5000
	DefaultQuickIdleTunnels     = 1000
	DefaultNewTunnelConcurrency = 32
	DefaultBulkStreams          = 8
	DefaultForwardConns         = 8
)

// maxIdleTunnels keeps the harness under its 20,000-descriptor limit: each
// idle tunnel holds two descriptors here.
const maxIdleTunnels = 8000

// ErrOptions marks invalid Options.
var ErrOptions = errors.New("bench: invalid options")

// withDefaults fills zero fields and validates the rest.
func (o Options) withDefaults() (Options, error) {
	if o.Duration == 0 {
		o.Duration = DefaultDuration
		if o.Quick {
			o.Duration = DefaultQuickDuration
		}
	}
	if o.Reps == 0 {
		o.Reps = DefaultReps
	}
	if o.IdleTunnels == 0 {
		o.IdleTunnels = DefaultIdleTunnels
		if o.Quick {
			o.IdleTunnels = DefaultQuickIdleTunnels
		}
	}
	if o.NewTunnelConcurrency == 0 {
		o.NewTunnelConcurrency = DefaultNewTunnelConcurrency
	}
	if o.BulkStreams == 0 {
		o.BulkStreams = DefaultBulkStreams
	}
	if o.ForwardConns == 0 {
		o.ForwardConns = DefaultForwardConns
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	switch {
	case o.Duration < 0:
		return o, fmt.Errorf("%w: duration %s is negative", ErrOptions, o.Duration)
	case o.Reps < 1:
		return o, fmt.Errorf("%w: reps %d is below 1", ErrOptions, o.Reps)
	case o.IdleTunnels < 1 || o.IdleTunnels > maxIdleTunnels:
		return o, fmt.Errorf("%w: idle tunnels %d outside 1..%d", ErrOptions, o.IdleTunnels, maxIdleTunnels)
	case o.NewTunnelConcurrency < 1, o.BulkStreams < 1, o.ForwardConns < 1:
		return o, fmt.Errorf("%w: concurrency, bulk streams and forward connections must be positive", ErrOptions)
	}
	for _, sc := range o.Scenarios {
		if !slices.Contains(scenarioNames, sc) {
			return o, fmt.Errorf("%w: unknown scenario %q (scenarios: %s)", ErrOptions, sc, strings.Join(scenarioNames, ", "))
		}
	}
	return o, nil
}

// scenarioNames are the values Options.Scenarios accepts.
var scenarioNames = []string{"bulk", "new", "rtt", "forward", "tls", "idle"}

// runs reports whether scenario name is selected.
func (o Options) runs(name string) bool {
	return len(o.Scenarios) == 0 || slices.Contains(o.Scenarios, name)
}
