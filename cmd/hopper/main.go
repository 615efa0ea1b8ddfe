// Command hopper is a rotating proxy: one port for HTTP CONNECT, HTTP forward
// requests and SOCKS, leaving through a pool of upstream proxies or local
// addresses. This package parses the command line and config file and wires
// the packages together; it is the only place that knows all of them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); otherwise
// the module's build info is used.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `hopper: a rotating proxy for HTTP, HTTPS and SOCKS

Usage:
  hopper serve   [flags]    run the proxy (hopper serve --help lists the flags)
  hopper judge   [flags]    echo callers' address and headers as JSON (for probes)
  hopper check   --upstreams FILE|URL... [flags]
                            verify upstream lists: exit IP, latency, anonymity
  hopper ca      init|export [--ca-dir DIR] [--format pem|der]
  hopper bench   [flags]    measure this binary against direct connections (and peers) on loopback
                            make or print the CA that --mitm signs with
  hopper version            print the version

With no upstreams hopper egresses directly, as a plain proxy.
`

// usageError is a mistake on the command line or in the config file: exit
// status 2, reported as the one line it holds.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef builds a usageError; %w verbs keep the causes comparable.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// run executes one command and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "judge":
		err = judgeCmd(ctx, args[1:], stdout, stderr)
	case "check":
		err = checkCmd(ctx, args[1:], stdout, stderr)
	case "ca":
		err = caCmd(ctx, args[1:], stdout, stderr)
	case "bench":
		return benchCmd(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "hopper", buildVersion())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "hopper: unknown command %q (commands: serve, check, judge, ca, bench, version)\n", args[0])
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		return 0
	case errors.As(err, new(*usageError)):
		fmt.Fprintln(stderr, "hopper:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "hopper:", err)
		return 1
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		if v != "" {
			return v
		}
	}
	return "devel"
}
