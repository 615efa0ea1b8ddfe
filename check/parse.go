package check

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/hopper-proxy/hopper/rotate"
)

// Errors Parse reports (wrapped in *ItemError, *rotate.LineError or
// *SourceError).
var (
	// ErrBadJSON: a JSON source is not an array of entries (nor an object
	// holding one under "proxies", "data", "list", "results" or "items").
	ErrBadJSON = errors.New("not a JSON list of proxies")
	// ErrUnsupportedProtocol: a JSON element names a protocol hopper cannot
	// speak (ftp, for instance).
	ErrUnsupportedProtocol = errors.New("unsupported protocol")
	// ErrBadItem: a JSON element lacks an address or a port, or is neither
	// an object nor a string.
	ErrBadItem = errors.New("not a proxy entry")
)

// maxLineLen bounds one list line, as rotate.ParseList does.
const maxLineLen = 8 << 10

// ItemError is an element of a JSON list that could not be used.
type ItemError struct {
	Source string
	Index  int // 1-based
	Err    error
}

func (e *ItemError) Error() string { return fmt.Sprintf("%s: item %d: %v", e.Source, e.Index, e.Err) }

func (e *ItemError) Unwrap() error { return e.Err }

// Parse reads one list, named name in errors, in any of the common formats:
//
//   - one entry per line, in every form `hopper serve` reads (ip:port, URL
//     form, host:port:user:pass...), '#' comments and blank lines ignored;
//     a line that is not an entry as a whole is retried as its first field
//     ("1.2.3.4:8080 US elite") or as "host port";
//   - JSON: an array of objects such as {"ip": "1.2.3.4", "port": 8080,
//     "protocol": "socks5"} (also "host"/"address", "type"/"protocols",
//     "username"/"password", port as a number or a string), or of entry
//     strings, or an object holding such an array under "proxies", "data",
//     "list", "results" or "items".
//
// In JSON, "https" means what public lists mean by it: a plain HTTP proxy that
// tunnels (CONNECT), not a proxy behind TLS. Entries without a scheme (bare
// ip:port, or JSON without a protocol) are HTTP proxies, unless the source's
// file name contains "socks5", as public lists are named (socks5.txt). Bad
// lines and elements are returned as errors and skipped. Entries are returned
// in order, duplicates included.
func Parse(name string, data []byte) ([]rotate.Entry, []error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	bare := bareScheme(name)
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && (trimmed[0] == '[' || trimmed[0] == '{') && json.Valid(trimmed) {
		return parseJSON(name, trimmed, bare)
	}
	return parseLines(name, data, bare)
}

// bareScheme is the scheme of entries that name none in a source: SOCKS5 or
// SOCKS4 when the source's file name says so, else HTTP.
func bareScheme(name string) rotate.Scheme {
	base := name
	if u, err := url.Parse(name); err == nil && u.Path != "" {
		base = u.Path
	}
	switch file := strings.ToLower(path.Base(base)); {
	case strings.Contains(file, "socks5"):
		return rotate.SchemeSOCKS5
	case strings.Contains(file, "socks4"):
		return rotate.SchemeSOCKS4
	}
	return rotate.SchemeHTTP
}

func parseLines(name string, data []byte, bare rotate.Scheme) (entries []rotate.Entry, errs []error) {
	for lineNo := 1; len(data) > 0; lineNo++ {
		line, rest, _ := bytes.Cut(data, []byte("\n"))
		data = rest
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > maxLineLen {
			errs = append(errs, &rotate.LineError{File: name, Line: lineNo, Err: rotate.ErrLineTooLong})
			continue
		}
		text := stripComment(string(line))
		if text == "" {
			continue
		}
		e, err := parseLine(text, bare)
		if err != nil {
			errs = append(errs, &rotate.LineError{File: name, Line: lineNo, Err: err})
			continue
		}
		entries = append(entries, e)
	}
	return entries, errs
}

// stripComment removes a comment ('#' at the start or after white space)
// and surrounding white space, as rotate.ParseList does.
func stripComment(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t') {
			s = s[:i]
			break
		}
	}
	return strings.TrimSpace(s)
}

// parseLine reads one entry with rotate.ParseEntry, retrying a line with
// extra columns as its first field or as "host port".
func parseLine(text string, bare rotate.Scheme) (rotate.Entry, error) {
	raw := text
	e, err := rotate.ParseEntry(text)
	if err != nil {
		f := strings.Fields(text)
		if len(f) < 2 {
			return rotate.Entry{}, err
		}
		raw = f[0]
		if _, perr := strconv.ParseUint(f[1], 10, 16); perr == nil && !strings.Contains(f[0], ":") {
			raw = net.JoinHostPort(f[0], f[1])
		}
		var ferr error
		if e, ferr = rotate.ParseEntry(raw); ferr != nil {
			return rotate.Entry{}, err
		}
	}
	if bare != rotate.SchemeHTTP && e.Scheme == rotate.SchemeHTTP && !strings.Contains(raw, "://") {
		return withScheme(e, bare)
	}
	return e, nil
}

// withScheme re-reads e under another scheme, so that the scheme's own
// rules apply.
func withScheme(e rotate.Entry, s rotate.Scheme) (rotate.Entry, error) {
	e.Scheme = s
	return rotate.ParseEntry(e.String())
}

func parseJSON(name string, data []byte, bare rotate.Scheme) (entries []rotate.Entry, errs []error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, []error{&SourceError{Source: name, Err: fmt.Errorf("%w: %w", ErrBadJSON, err)}}
	}
	items, ok := jsonItems(v)
	if !ok {
		return nil, []error{&SourceError{Source: name, Err: ErrBadJSON}}
	}
	for i, it := range items {
		e, err := jsonEntry(it, bare)
		if err != nil {
			errs = append(errs, &ItemError{Source: name, Index: i + 1, Err: err})
			continue
		}
		entries = append(entries, e)
	}
	return entries, errs
}

// jsonItems finds the list of entries in a decoded JSON document.
func jsonItems(v any) ([]any, bool) {
	switch t := v.(type) {
	case []any:
		return t, true
	case map[string]any:
		for _, k := range []string{"proxies", "data", "list", "results", "items"} {
			if a, ok := lookup(t, k).([]any); ok {
				return a, true
			}
		}
		if lookup(t, "ip", "host", "address") != nil {
			return []any{t}, true
		}
	}
	return nil, false
}

// jsonEntry reads one element: an object with address fields, or a string
// in list form.
func jsonEntry(it any, bare rotate.Scheme) (rotate.Entry, error) {
	if s, ok := it.(string); ok {
		return parseLine(strings.TrimSpace(s), bare)
	}
	obj, ok := it.(map[string]any)
	if !ok {
		return rotate.Entry{}, fmt.Errorf("%w: neither an object nor a string", ErrBadItem)
	}
	host := scalar(lookup(obj, "ip", "host", "address", "addr", "server", "hostname"))
	port := scalar(lookup(obj, "port"))
	if host == "" {
		return rotate.Entry{}, fmt.Errorf("%w: no \"ip\" or \"host\"", ErrBadItem)
	}
	if port == "" {
		h, p, err := net.SplitHostPort(host)
		if err != nil {
			return rotate.Entry{}, fmt.Errorf("%w: no \"port\"", ErrBadItem)
		}
		host, port = h, p
	}
	scheme, err := jsonScheme(obj, bare)
	if err != nil {
		return rotate.Entry{}, err
	}
	u := url.URL{Scheme: scheme.String(), Host: net.JoinHostPort(strings.Trim(host, "[]"), port)}
	if user := scalar(lookup(obj, "username", "user", "login")); user != "" {
		u.User = url.UserPassword(user, scalar(lookup(obj, "password", "pass")))
	}
	return rotate.ParseEntry(u.String())
}

// jsonScheme reads "protocol" (or "type", "scheme", "proto"), else the first
// supported name in "protocols" (or "types"), SOCKS4 only when nothing
// better is listed (it has no password and reaches IPv4 targets alone);
// bare when there is none.
func jsonScheme(obj map[string]any, bare rotate.Scheme) (rotate.Scheme, error) {
	if p := scalar(lookup(obj, "protocol", "type", "scheme", "proto")); p != "" {
		return protocolScheme(p)
	}
	list, _ := lookup(obj, "protocols", "types").([]any)
	if len(list) == 0 {
		return bare, nil
	}
	var first error
	var socks4 rotate.Scheme
	for _, v := range list {
		s, err := protocolScheme(scalar(v))
		switch {
		case err != nil:
			if first == nil {
				first = err
			}
		case s == rotate.SchemeSOCKS4 || s == rotate.SchemeSOCKS4A:
			if socks4 == 0 {
				socks4 = s
			}
		default:
			return s, nil
		}
	}
	if socks4 != 0 {
		return socks4, nil
	}
	return 0, first
}

func protocolScheme(p string) (rotate.Scheme, error) {
	switch strings.ToLower(strings.TrimSpace(p)) {
	case "http", "https":
		return rotate.SchemeHTTP, nil
	case "socks5":
		return rotate.SchemeSOCKS5, nil
	case "socks5h":
		return rotate.SchemeSOCKS5H, nil
	case "socks4":
		return rotate.SchemeSOCKS4, nil
	case "socks4a":
		return rotate.SchemeSOCKS4A, nil
	}
	return 0, fmt.Errorf("%w %q", ErrUnsupportedProtocol, truncate(p, 20))
}

// lookup returns the value of the first of names present in obj, names
// compared case-insensitively; nil if none.
func lookup(obj map[string]any, names ...string) any {
	for _, n := range names {
		if v, ok := obj[n]; ok {
			return v
		}
		for k, v := range obj {
			if strings.EqualFold(k, n) {
				return v
			}
		}
	}
	return nil
}

// scalar renders a JSON string or number; "" for anything else.
func scalar(v any) string {
	switch t := v.(type) {
	case string:
		return strings.TrimSpace(t)
	case json.Number:
		return t.String()
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
