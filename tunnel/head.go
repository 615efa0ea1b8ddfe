package tunnel

import (
	"bytes"
	"errors"
	"fmt"
)

// errBadRequest is wrapped by every failure to read or understand a client's
// request; the client gets 400 and the connection is closed.
var errBadRequest = errors.New("bad request")

// errHeadTooLarge is a bad request whose head exceeded Config.MaxHeadBytes.
var errHeadTooLarge = fmt.Errorf("%w: head too large", errBadRequest)

// errBadResponse is wrapped when an origin (or upstream proxy) answers with
// something that is not an HTTP/1.x response.
var errBadResponse = errors.New("malformed response from upstream")

// field is one header field. Name and value are slices of head.raw; the value
// has surrounding whitespace trimmed.
type field struct {
	name, value []byte
}

// head is a parsed HTTP/1.x request or response head (RFC 9112 §2–5). One head
// is reused for every message on a connection: parsing overwrites all of it,
// and its slices point into raw, which the head owns, so they stay valid
// while the connection's buffers move on.
type head struct {
	raw []byte

	// Request line.
	method, target []byte
	// Status line.
	status int
	reason []byte
	// HTTP version, 1.minor.
	minor int

	fields []field
}

// headEnd returns the length of the head at the start of b, including the
// empty line that ends it, or -1 if b holds no complete head yet. Scanning
// starts at from, so a caller that appends to b can resume where it left off
// (from = old length - 3, or 0).
func headEnd(b []byte, from int) int {
	if from < 0 {
		from = 0
	}
	i := from
	for i < len(b) {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
	return -1
}

// parseRequest parses a complete request head (as delimited by headEnd)
// into h. On error h is left in an unspecified state.
func (h *head) parseRequest(b []byte) error {
	h.reset(b)
	line, rest, err := cutLine(h.raw)
	if err != nil {
		return fmt.Errorf("%w: %w", errBadRequest, err)
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !isToken(line[:sp]) {
		return fmt.Errorf("%w: bad method", errBadRequest)
	}
	h.method = line[:sp]
	line = line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return fmt.Errorf("%w: bad request line", errBadRequest)
	}
	h.target = line[:sp]
	for _, c := range h.target {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w: bad request target", errBadRequest)
		}
	}
	minor, ok := parseVersion(line[sp+1:])
	if !ok {
		return fmt.Errorf("%w: unsupported protocol version", errBadRequest)
	}
	h.minor = minor
	return h.parseFields(rest, errBadRequest)
}

// parseResponse parses a complete response head into h.
func (h *head) parseResponse(b []byte) error {
	h.reset(b)
	line, rest, err := cutLine(h.raw)
	if err != nil {
		return fmt.Errorf("%w: %w", errBadResponse, err)
	}
	if len(line) < 12 || line[8] != ' ' {
		return fmt.Errorf("%w: bad status line", errBadResponse)
	}
	minor, ok := parseVersion(line[:8])
	if !ok {
		return fmt.Errorf("%w: unsupported protocol version", errBadResponse)
	}
	h.minor = minor
	code := line[9:12]
	for _, c := range code {
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: bad status code", errBadResponse)
		}
	}
	h.status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	if h.status < 100 {
		return fmt.Errorf("%w: bad status code", errBadResponse)
	}
	switch {
	case len(line) == 12:
		h.reason = nil
	case line[12] == ' ':
		h.reason = line[13:]
		for _, c := range h.reason {
			if isCTL(c) && c != '\t' {
				return fmt.Errorf("%w: bad reason phrase", errBadResponse)
			}
		}
	default:
		return fmt.Errorf("%w: bad status line", errBadResponse)
	}
	return h.parseFields(rest, errBadResponse)
}

func (h *head) reset(b []byte) {
	h.raw = append(h.raw[:0], b...)
	h.method, h.target, h.reason = nil, nil, nil
	h.status, h.minor = 0, 0
	h.fields = h.fields[:0]
}

// parseFields parses header lines up to the empty line that ends the head.
func (h *head) parseFields(b []byte, kind error) error {
	for {
		line, rest, err := cutLine(b)
		if err != nil {
			return fmt.Errorf("%w: %w", kind, err)
		}
		if len(line) == 0 {
			if len(rest) != 0 {
				return fmt.Errorf("%w: data after head", kind)
			}
			return nil
		}
		b = rest
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold: RFC 9112 §5.2 lets a server reject it with 400.
			return fmt.Errorf("%w: obsolete line folding", kind)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return fmt.Errorf("%w: bad header name", kind)
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if isCTL(c) && c != '\t' {
				return fmt.Errorf("%w: bad header value", kind)
			}
		}
		h.fields = append(h.fields, field{name: line[:colon], value: value})
	}
}

var errBadLine = errors.New("bad line ending")

// cutLine splits b at the first LF; the line excludes the CRLF or LF. A bare
// CR anywhere in the line is an error.
func cutLine(b []byte) (line, rest []byte, err error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, errBadLine
	}
	line, rest = b[:i], b[i+1:]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, errBadLine
	}
	return line, rest, nil
}

// parseVersion reads "HTTP/1.x" and returns x.
func parseVersion(b []byte) (minor int, ok bool) {
	if len(b) != 8 || string(b[:7]) != "HTTP/1." || b[7] < '0' || b[7] > '9' {
		return 0, false
	}
	return int(b[7] - '0'), true
}

// get returns the value of the first field named name (ASCII
// case-insensitive), or nil.
func (h *head) get(name string) []byte {
	for i := range h.fields {
		if equalFold(h.fields[i].name, name) {
			return h.fields[i].value
		}
	}
	return nil
}

// hasToken reports whether any field named name lists token in its
// comma-separated value (both compared case-insensitively).
func (h *head) hasToken(name, token string) bool {
	for i := range h.fields {
		if equalFold(h.fields[i].name, name) && listHas(h.fields[i].value, token) {
			return true
		}
	}
	return false
}

// listHas reports whether the comma-separated list v contains token.
func listHas(v []byte, token string) bool {
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		if equalFold(trimOWS(item), token) {
			return true
		}
	}
	return false
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares b with s, ASCII case-insensitively, without allocating.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

// hasPrefixFold reports whether b starts with s, ASCII case-insensitively.
func hasPrefixFold(b []byte, s string) bool {
	return len(b) >= len(s) && equalFold(b[:len(s)], s)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isCTL(c byte) bool { return c < ' ' || c == 0x7f }

// isToken reports whether b is a non-empty RFC 9110 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isTchar(c) {
			return false
		}
	}
	return true
}

// isTchar reports whether c may appear in a token (RFC 9110 §5.6.2).
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
