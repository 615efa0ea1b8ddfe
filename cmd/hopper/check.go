package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hopper-proxy/hopper/check"
	"github.com/hopper-proxy/hopper/rotate"
)

// checkFormats are the values --format takes.
var checkFormats = []string{"table", "json", "csv"}

// maxProblemsShown bounds the skipped-entry messages printed.
const maxProblemsShown = 20

// errNoneGood is the outcome of a check that found no usable upstream: exit
// status 1.
var errNoneGood = errors.New("no upstream passed the check")

// checkOptions is everything `hopper check` can be told.
type checkOptions struct {
	Upstreams    []string
	Judges       []string
	Concurrency  int
	Timeout      time.Duration
	Out          string
	Format       string
	MinAnonymity rotate.Anonymity
	MaxLatency   time.Duration
	LogLevel     string
}

// parseCheck reads the command line of `hopper check`. Arguments after the
// flags are sources too.
func parseCheck(args []string, out io.Writer) (checkOptions, error) {
	o := checkOptions{Concurrency: check.DefaultConcurrency, Timeout: check.DefaultTimeout, Format: "table", LogLevel: "warn"}
	var minAnon string
	fs := flag.NewFlagSet("hopper check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&listFlag{list: &o.Upstreams}, "upstreams", "upstream list: file, http(s) URL, or - for standard input (repeatable; formats: one entry per line, ip:port, URL form, JSON arrays of {ip, port, protocol})")
	fs.Var(&listFlag{list: &o.Judges}, "judge", "judge URL (hopper judge) to learn exit IPs and anonymity (repeatable: the next one is tried when one does not answer); none: TCP connect only")
	fs.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "upstreams checked at once")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "budget of one upstream's check: connect, handshake and the judge's answer")
	fs.StringVar(&o.Out, "out", "", "write the good upstreams here, fastest first, as a list for hopper serve --upstreams")
	fs.StringVar(&o.Format, "format", o.Format, "report format on standard output: table, json or csv")
	fs.StringVar(&minAnon, "min-anonymity", "", "keep only upstreams at least this anonymous: transparent, anonymous or elite (needs --judge)")
	fs.DurationVar(&o.MaxLatency, "max-latency", 0, "keep only upstreams whose time to first byte is at most this (0: no limit)")
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "debug (one line per upstream), info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printFlags(out, "hopper check --upstreams FILE|URL... [flags]", fs)
			return o, errHelp
		}
		return o, usagef("%s (see 'hopper check --help')", flagError(err))
	}
	o.Upstreams = append(o.Upstreams, fs.Args()...)
	var err error
	switch {
	case len(o.Upstreams) == 0:
		return o, usagef("--upstreams: no list given (see 'hopper check --help')")
	case !contains(checkFormats, o.Format):
		return o, usagef("--format: invalid value %q (allowed: table, json, csv)", o.Format)
	case o.Concurrency < 1:
		return o, usagef("--concurrency: must be at least 1, not %d", o.Concurrency)
	case o.Timeout <= 0:
		return o, usagef("--timeout: must be positive, not %v", o.Timeout)
	case o.MaxLatency < 0:
		return o, usagef("--max-latency: must not be negative")
	case !contains(logLevels, o.LogLevel):
		return o, usagef("--log-level: invalid value %q (allowed: debug, info, warn, error)", o.LogLevel)
	}
	if o.MinAnonymity, err = rotate.ParseAnonymity(minAnon); err != nil {
		return o, usagef("--min-anonymity: %w", err)
	}
	return o, nil
}

// checkCmd runs `hopper check`: it verifies every entry of the lists through
// its upstream, shows progress on standard error, prints the report on
// standard output, and writes the good entries to --out. It returns nil when
// at least one upstream is good.
func checkCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseCheck(args, stdout)
	if err != nil {
		return err
	}
	cfg := check.Config{
		Judges: o.Judges, Concurrency: o.Concurrency, Timeout: o.Timeout,
		MinAnonymity: o.MinAnonymity, MaxLatency: o.MaxLatency,
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%w", err)
	}
	log, err := newLogger(stderr, o.LogLevel, "console")
	if err != nil {
		return err
	}
	cfg.Logger = log
	checker, err := check.New(cfg)
	if err != nil {
		return usagef("%w", err)
	}

	loaded := check.Load(ctx, o.Upstreams, check.LoadOptions{Stdin: os.Stdin})
	for i, p := range loaded.Problems {
		if i == maxProblemsShown {
			fmt.Fprintf(stderr, "hopper check: %d more problems not shown\n", len(loaded.Problems)-i)
			break
		}
		fmt.Fprintln(stderr, "hopper check: skipped:", p)
	}
	if loaded.Duplicates > 0 {
		fmt.Fprintf(stderr, "hopper check: %d duplicate entries dropped\n", loaded.Duplicates)
	}
	if len(loaded.Entries) == 0 {
		return errors.New("no usable upstream entry in the given lists")
	}
	if len(o.Judges) == 0 {
		fmt.Fprintln(stderr, "hopper check: no --judge: checking TCP reachability only (no exit IP, no anonymity)")
	}

	prog := check.NewProgress(stderr, len(loaded.Entries), isTerminal(stderr))
	rep, runErr := checker.Run(ctx, loaded.Entries, prog.Add)
	prog.Finish()
	if err := writeReport(stdout, o.Format, rep); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	good := len(rep.Good())
	if o.Out != "" {
		if err := writeListFile(o.Out, rep); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		fmt.Fprintf(stderr, "hopper check: wrote %d good upstreams to %s\n", good, o.Out)
	}
	switch {
	case runErr != nil:
		return fmt.Errorf("interrupted after %d of %d upstreams: %w", len(rep.Results), rep.Total, runErr)
	case good == 0:
		return errNoneGood
	}
	return nil
}

func writeReport(w io.Writer, format string, rep *check.Report) error {
	switch format {
	case "json":
		return check.WriteJSON(w, rep)
	case "csv":
		return check.WriteCSV(w, rep)
	default:
		return check.WriteTable(w, rep)
	}
}

// writeListFile replaces path with the good entries, atomically, readable by
// its owner only (entries carry credentials).
func writeListFile(path string, rep *check.Report) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".hopper-check-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, there is nothing left to remove
	if err := check.WriteList(f, rep); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// isTerminal reports whether w is a terminal (a character device), where
// the progress bar can be redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
