package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/judge"
)

// judgeCmd runs `hopper judge`: an HTTP server that echoes the caller's
// address and headers as JSON, for probes and `hopper check`.
func judgeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hopper judge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", "127.0.0.1:8081", "address to serve the judge on")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "console", "console or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printFlags(stdout, "hopper judge [flags]", fs)
			return errHelp
		}
		return usagef("%s (see 'hopper judge --help')", flagError(err))
	}
	if !contains(logLevels, *level) {
		return usagef("--log-level: invalid value %q (allowed: debug, info, warn, error)", *level)
	}
	if !contains(logFormats, *format) {
		return usagef("--log-format: invalid value %q (allowed: console, json)", *format)
	}
	log, err := newLogger(stderr, *level, *format)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	log.Info("listening", zap.String("addr", ln.Addr().String()), zap.String("judge", "http://"+ln.Addr().String()+"/"))
	return (&judge.Server{Logger: log}).Serve(ctx, ln)
}
