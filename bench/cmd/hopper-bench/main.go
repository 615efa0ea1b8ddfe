// Command hopper-bench measures hopper against a direct loopback connection
// and against tinyproxy, dante and glider when installed, and writes the
// table to bench/RESULTS.md. `make bench` runs it; see package bench for the
// scenarios and `hopper-bench -h` for the flags.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/hopper-proxy/hopper/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
