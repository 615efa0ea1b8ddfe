package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/hopper-proxy/hopper/judge"
	"github.com/hopper-proxy/hopper/mitm"
)

// judgeCmd runs `hopper judge`: an HTTP server that echoes the caller's
// address and headers as JSON, for probes and `hopper check`; with
// --tls-listen also a TLS port whose reports add the JA4 and HTTP/2
// fingerprints the caller showed.
func judgeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hopper judge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", "127.0.0.1:8081", "address to serve the judge on")
	tlsListen := fs.String("tls-listen", "", "also serve the judge over TLS here, reporting JA4 and HTTP/2 fingerprints")
	tlsCert := fs.String("tls-cert", "", "certificate (PEM) for --tls-listen; default: a self-signed one for --tls-names")
	tlsKey := fs.String("tls-key", "", "private key (PEM) of --tls-cert")
	caDir := fs.String("ca-dir", "", "sign the --tls-listen certificate for --tls-names with hopper's CA in DIR")
	tlsNames := fs.String("tls-names", "localhost,127.0.0.1,::1", "comma-separated names the generated TLS certificate covers")
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
	cert, err := judgeCertificate(*tlsListen, *tlsCert, *tlsKey, *caDir, *tlsNames)
	if err != nil {
		return err
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
	srv := &judge.Server{Logger: log, Certificate: cert}
	g, gctx := errgroup.WithContext(ctx)
	if *tlsListen != "" {
		tln, err := lc.Listen(ctx, "tcp", *tlsListen)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("--tls-listen: %w", err)
		}
		log.Info("listening", zap.String("addr", tln.Addr().String()), zap.String("judge", "https://"+tln.Addr().String()+"/"))
		g.Go(func() error { return srv.ServeTLS(gctx, tln) })
	}
	log.Info("listening", zap.String("addr", ln.Addr().String()), zap.String("judge", "http://"+ln.Addr().String()+"/"))
	g.Go(func() error { return srv.Serve(gctx, ln) })
	return g.Wait()
}

// judgeCertificate is the certificate of the judge's TLS port: the files
// given, a leaf from hopper's CA, or nil for the judge's self-signed one
// (made for names). Without --tls-listen the TLS flags are errors.
func judgeCertificate(listen, certFile, keyFile, caDir, names string) (*tls.Certificate, error) {
	if listen == "" {
		if certFile != "" || keyFile != "" || caDir != "" {
			return nil, usagef("--tls-cert, --tls-key and --ca-dir need --tls-listen")
		}
		return nil, nil
	}
	var list []string
	for _, n := range strings.Split(names, ",") {
		if n = strings.TrimSpace(n); n != "" {
			list = append(list, n)
		}
	}
	switch {
	case (certFile == "") != (keyFile == ""):
		return nil, usagef("--tls-cert and --tls-key go together")
	case certFile != "" && caDir != "":
		return nil, usagef("--ca-dir and --tls-cert are alternatives")
	case certFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert: %w", err)
		}
		return &cert, nil
	case caDir != "":
		ca, err := mitm.LoadCA(caDir)
		if err != nil {
			if isNoCA(err) {
				return nil, usagef("--ca-dir %s has no CA: run 'hopper ca init --ca-dir %s'", caDir, caDir)
			}
			return nil, fmt.Errorf("--ca-dir: %w", err)
		}
		cert, err := ca.IssueLeaf(time.Now(), list...)
		if err != nil {
			return nil, fmt.Errorf("--tls-names: %w", err)
		}
		return cert, nil
	}
	cert, err := judge.SelfSigned(time.Now(), list...)
	if err != nil {
		return nil, err
	}
	return &cert, nil
}
