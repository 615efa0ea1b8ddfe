package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Main is the command line of the harness, shared by `go run
// ./bench/cmd/hopper-bench` and `hopper bench`: it parses args, runs the
// benchmark with progress and the table on stdout, writes the table to
// -out, and returns the exit code (0 ok, 1 a failed measurement, 2 bad
// usage). A caller that is itself hopper passes -hopper with its own
// executable so nothing needs building.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if served, err := serveBareRelayFromEnv(ctx); served {
		if err != nil {
			fmt.Fprintln(stderr, "hopper bench:", err)
			return 1
		}
		return 0
	}
	fs := flag.NewFlagSet("hopper bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts Options
	var out string
	fs.DurationVar(&opts.Duration, "duration", 0, "time per scenario and repetition (default 2s, 500ms with -quick)")
	fs.IntVar(&opts.Reps, "reps", DefaultReps, "repetitions per scenario; each figure is their median")
	fs.BoolVar(&opts.Quick, "quick", false, "shorter defaults: 500ms per scenario, 1,000 idle tunnels")
	fs.BoolVar(&opts.Peers, "peers", true, "also measure tinyproxy, dante and glider when installed")
	fs.IntVar(&opts.IdleTunnels, "idle-tunnels", 0, "tunnels held open for the memory figure (default 5000, 1000 with -quick)")
	fs.StringVar(&opts.HopperBin, "hopper", "", "hopper binary to measure (default: build ./cmd/hopper)")
	fs.StringVar(&opts.ModuleDir, "module", "", "hopper's module root (default: nearest go.mod above the working directory)")
	fs.BoolVar(&opts.NoChained, "no-chained", false, "skip hopper chained through a second hopper")
	fs.BoolVar(&opts.NoMITM, "no-mitm", false, "skip hopper with --mitm (HTTPS scenario only)")
	fs.Func("only", "run only these scenarios, comma-separated: "+strings.Join(scenarioNames, ", "), func(v string) error {
		opts.Scenarios = append(opts.Scenarios, strings.Split(v, ",")...)
		return nil
	})
	fs.StringVar(&opts.CPUProfileDir, "cpuprofile", "", "directory for hopper CPU profiles (sets HOPPER_CPUPROFILE per hopper process)")
	fs.StringVar(&out, "out", "", "markdown file to write (default <module>/bench/RESULTS.md; - for none)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hopper bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if out == "" {
		root := opts.ModuleDir
		if root == "" {
			root, _ = moduleRoot()
		}
		out = "RESULTS.md"
		if root != "" {
			out = filepath.Join(root, "bench", "RESULTS.md")
		}
	}
	// The bare relay is this same program again: Main serves it when the
	// environment says so, before reading any flag, so the whole command
	// line can be repeated.
	if exe, err := os.Executable(); err == nil {
		opts.BareRelay = append([]string{exe}, os.Args[1:]...)
	}
	rep, err := Run(ctx, opts, stdout)
	if rep != nil && out != "-" {
		if werr := os.WriteFile(out, []byte(rep.Markdown()), 0o644); werr != nil {
			fmt.Fprintln(stderr, "hopper bench:", werr)
			return 1
		}
		fmt.Fprintln(stdout, "wrote", out)
	}
	if err != nil {
		fmt.Fprintln(stderr, "hopper bench:", err)
		if errors.Is(err, ErrOptions) {
			return 2
		}
		return 1
	}
	return 0
}
