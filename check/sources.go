package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hopper-proxy/hopper/rotate"
)

// Errors sources fail with (wrapped in *SourceError).
var (
	// ErrListTooLarge: a source exceeds LoadOptions.MaxSize (the
	// updater's error for the same).
	ErrListTooLarge = rotate.ErrListTooLarge
	// ErrFetch: a list URL answered with a non-2xx status.
	ErrFetch = rotate.ErrFetch
	// ErrNoStdin: "-" was given but there is no standard input to read.
	ErrNoStdin = errors.New("no standard input")
)

// DefaultMaxListSize bounds one source when LoadOptions.MaxSize is zero.
const DefaultMaxListSize = 64 << 20

// SourceError is a source that could not be read or decoded as a whole.
type SourceError struct {
	Source string // redacted for URLs
	Err    error
}

func (e *SourceError) Error() string { return e.Source + ": " + e.Err.Error() }

func (e *SourceError) Unwrap() error { return e.Err }

// LoadOptions configures Load. The zero value is usable.
type LoadOptions struct {
	// Client fetches URL sources. Nil means a client of Load's own, with
	// the environment's proxy settings and a 60s limit per list.
	Client *http.Client
	// MaxSize bounds one source in bytes. Zero means 64 MiB.
	MaxSize int64
	// Stdin is what the source "-" reads. Nil makes "-" an error.
	Stdin io.Reader
}

// Loaded is what Load read.
type Loaded struct {
	// Entries are the distinct entries, in the order first seen.
	Entries []rotate.Entry
	// Duplicates counts entries dropped as seen before (in any source).
	Duplicates int
	// Problems lists what was skipped: *SourceError for a source that could
	// not be read, *rotate.LineError for a bad line, *ItemError for a bad
	// JSON element. None of them holds credentials.
	Problems []error
}

// Load reads every source — a file, an http(s) URL, "-" for standard input,
// or an inline "direct"/"direct://ADDR" entry — parses it with Parse, and
// deduplicates the entries across all of them. A source that fails is
// reported and skipped; ctx bounds the fetches.
func Load(ctx context.Context, srcs []string, opts LoadOptions) Loaded {
	if opts.MaxSize == 0 {
		opts.MaxSize = DefaultMaxListSize
	}
	if opts.Client == nil {
		tr := &http.Transport{Proxy: http.ProxyFromEnvironment, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		opts.Client = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	}
	var l Loaded
	seen := make(map[rotate.Entry]struct{})
	add := func(e rotate.Entry) {
		if _, dup := seen[e]; dup {
			l.Duplicates++
			return
		}
		seen[e] = struct{}{}
		l.Entries = append(l.Entries, e)
	}
	for _, src := range srcs {
		if rotate.IsInlineDirect(src) {
			e, err := rotate.ParseEntry(src)
			if err != nil {
				l.Problems = append(l.Problems, &SourceError{Source: src, Err: err})
				continue
			}
			add(e)
			continue
		}
		name := rotate.SourceLabel(src)
		data, err := readSource(ctx, src, name, opts)
		if err != nil {
			l.Problems = append(l.Problems, &SourceError{Source: name, Err: err})
			continue
		}
		entries, errs := Parse(name, data)
		l.Problems = append(l.Problems, errs...)
		for _, e := range entries {
			add(e)
		}
	}
	return l
}

// readSource reads one source whole, within opts.MaxSize.
func readSource(ctx context.Context, src, name string, opts LoadOptions) ([]byte, error) {
	switch {
	case src == "-":
		if opts.Stdin == nil {
			return nil, ErrNoStdin
		}
		return readLimited(opts.Stdin, opts.MaxSize)
	case isURL(src):
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return nil, errors.New("invalid URL")
		}
		req.Header.Set("User-Agent", "hopper-check")
		resp, err := opts.Client.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // its text repeats the URL with its secrets
			}
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return nil, fmt.Errorf("%w: %s", ErrFetch, resp.Status)
		}
		return readLimited(resp.Body, opts.MaxSize)
	default:
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readLimited(f, opts.MaxSize)
	}
}

// readLimited reads r whole, failing past max bytes rather than truncating.
func readLimited(r io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w (over %d bytes)", ErrListTooLarge, max)
	}
	return data, nil
}

// isURL reports a source naming an http(s) URL rather than a file.
func isURL(src string) bool {
	lower := strings.ToLower(src)
	return strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://")
}
