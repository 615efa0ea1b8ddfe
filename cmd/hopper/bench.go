package main

import (
	"context"
	"io"
	"os"
	"strings"

	"github.com/hopper-proxy/hopper/bench"
)

// benchCmd runs `hopper bench`: the benchmark harness against this very
// binary unless -hopper names another. It returns the process exit code.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	named := false
	for _, a := range args {
		if n := strings.TrimLeft(a, "-"); n != a && (n == "hopper" || strings.HasPrefix(n, "hopper=")) {
			named = true
		}
	}
	if !named {
		if exe, err := os.Executable(); err == nil {
			args = append([]string{"-hopper", exe}, args...)
		}
	}
	return bench.Main(ctx, args, stdout, stderr)
}
