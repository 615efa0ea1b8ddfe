package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/hopper-proxy/hopper/mitm"
)

const caUsage = `Usage:
  hopper ca init   [--ca-dir DIR]                 make hopper's MITM CA (ECDSA P-256)
  hopper ca export [--ca-dir DIR] [--format pem|der]  print the CA certificate

The CA lives in --ca-dir (default %s):
  %s   the certificate clients trust
  %s   its private key, mode 0600; never share it

Anyone holding the key can impersonate every site to the clients that trust
the CA. Trust it only on machines whose traffic you may read.
`

// caCmd runs `hopper ca init|export`.
func caCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	def, defErr := mitm.DefaultCADir()
	if defErr != nil {
		def = "(none: give --ca-dir)"
	}
	help := func(w io.Writer) { fmt.Fprintf(w, caUsage, def, mitm.CACertFile, mitm.CAKeyFile) }
	if len(args) == 0 {
		help(stderr)
		return usagef("ca: want a subcommand: init or export")
	}
	sub := args[0]
	switch sub {
	case "help", "-h", "--help":
		help(stdout)
		return nil
	case "init", "export":
	default:
		return usagef("ca: unknown subcommand %q (want init or export)", sub)
	}
	fs := flag.NewFlagSet("hopper ca "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("ca-dir", "", "directory holding the CA (default "+def+")")
	format := "pem"
	if sub == "export" {
		fs.StringVar(&format, "format", format, "pem or der")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help(stdout)
			return errHelp
		}
		return usagef("ca %s: %s", sub, flagError(err))
	}
	if fs.NArg() > 0 {
		return usagef("ca %s: unexpected argument %q", sub, fs.Arg(0))
	}
	if *dir == "" {
		if defErr != nil {
			return usagef("ca %s: --ca-dir is required: %w", sub, defErr)
		}
		*dir = def
	}
	if sub == "init" {
		return caInit(*dir, stdout)
	}
	return caExport(*dir, format, stdout)
}

func caInit(dir string, stdout io.Writer) error {
	ca, err := mitm.InitCA(dir, time.Now())
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	fmt.Fprintf(stdout, `hopper: CA created in %s
  certificate  %s/%s   (trust this in your clients: hopper ca export)
  private key  %s/%s   (mode 0600; keep it secret)
  SHA-256      %s
Run 'hopper serve --mitm' to use it. Anyone with the key can impersonate
every site to clients that trust this CA.
`, dir, dir, mitm.CACertFile, dir, mitm.CAKeyFile, ca.Fingerprint())
	return nil
}

func caExport(dir, format string, stdout io.Writer) error {
	var der bool
	switch format {
	case "pem":
	case "der":
		der = true
	default:
		return usagef("ca export: --format: invalid value %q (allowed: pem, der)", format)
	}
	ca, err := loadCA(dir)
	if err != nil {
		return err
	}
	data := ca.PEM()
	if der {
		data = ca.DER()
	}
	_, err = stdout.Write(data)
	return err
}

// loadCA loads the CA in dir, turning a missing one into a one-line hint.
func loadCA(dir string) (*mitm.CA, error) {
	ca, err := mitm.LoadCA(dir)
	if errors.Is(err, mitm.ErrNoCA) {
		return nil, usagef("no MITM CA in %s: run 'hopper ca init' first (or give --ca-dir where yours is)", dir)
	}
	return ca, err
}
