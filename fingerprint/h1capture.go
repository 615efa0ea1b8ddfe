package fingerprint

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits of the HTTP/1.1 capture: a request head, a chunk-size line and a
// chunked body's trailer section.
const (
	maxH1Head      = 64 << 10
	maxChunkLine   = 4 << 10
	maxH1Trailers  = 64 << 10
	maxContentSkip = 1 << 62
)

// ErrNotHTTP1 is why an HTTP1Capture stops when the bytes are not HTTP/1.x
// requests it can follow, or after a request that may switch protocols.
var ErrNotHTTP1 = errors.New("not an HTTP/1.x request stream")

type h1State int

const (
	h1Head h1State = iota
	h1Body
	h1ChunkSize
	h1ChunkData
	h1ChunkCRLF
	h1Trailers
)

// HTTP1Capture watches the bytes an HTTP/1.x client sends (write them to it
// as they are read, e.g. through Tee) and records every request head with
// its header names as spelled and in order (Claim). Bodies are skipped by
// their Content-Length or chunked framing. After a request that may switch
// protocols (Upgrade, CONNECT) it stops, since what follows is not HTTP. It
// never fails a Write and is safe for concurrent use.
type HTTP1Capture struct {
	captureMu

	state h1State
	buf   []byte // the head, chunk-size line or trailers so far
	left  int64  // body or chunk bytes still to skip
}

// NewHTTP1Capture returns a capture expecting a request head first.
func NewHTTP1Capture() *HTTP1Capture { return &HTTP1Capture{} }

// Write records p, the next bytes the client sent. It always returns
// len(p), nil.
func (c *HTTP1Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	for len(p) > 0 && c.fail == nil {
		p = c.consume(p)
	}
	return n, nil
}

func (c *HTTP1Capture) consume(p []byte) []byte {
	switch c.state {
	case h1Body, h1ChunkData:
		n := int(min(c.left, int64(len(p))))
		c.left -= int64(n)
		if c.left == 0 {
			if c.state == h1Body {
				c.state = h1Head
			} else {
				c.state, c.left = h1ChunkCRLF, 2
			}
		}
		return p[n:]
	case h1ChunkCRLF:
		n := int(min(c.left, int64(len(p))))
		c.left -= int64(n)
		if c.left == 0 {
			c.state = h1ChunkSize
		}
		return p[n:]
	}
	limit, end := maxH1Head, []byte("\r\n\r\n")
	switch c.state {
	case h1ChunkSize:
		limit, end = maxChunkLine, []byte("\n")
	case h1Trailers:
		limit = maxH1Trailers
	}
	if c.state == h1Head && len(c.buf) == 0 {
		// Clients may send an empty line between requests.
		for len(p) > 0 && (p[0] == '\r' || p[0] == '\n') {
			p = p[1:]
		}
		if len(p) == 0 {
			return nil
		}
	}
	old := len(c.buf)
	c.buf = append(c.buf, p...)
	stop := -1 // end of the section in c.buf
	if c.state == h1Trailers && bytes.HasPrefix(c.buf, []byte("\r\n")) {
		stop = 2 // no trailer fields: just the final CRLF
	} else {
		from := max(0, old-len(end)+1)
		if i := bytes.Index(c.buf[from:], end); i >= 0 {
			stop = from + i + len(end)
		}
	}
	if stop < 0 {
		if len(c.buf) > limit {
			c.stop(fmt.Errorf("%w: line or head over %d bytes", ErrNotHTTP1, limit))
		}
		return nil
	}
	section := c.buf[:stop]
	rest := p[stop-old:]
	defer func() { c.buf = c.buf[:0] }()
	switch c.state {
	case h1Head:
		c.head(section)
	case h1ChunkSize:
		c.chunkSize(section)
	case h1Trailers:
		c.state = h1Head
	}
	return rest
}

func (c *HTTP1Capture) stop(err error) { c.fail = err }

// head parses one request head (request line, fields, blank line) and
// decides how its body is framed.
func (c *HTTP1Capture) head(b []byte) {
	lines := strings.Split(strings.TrimSuffix(string(b), "\r\n\r\n"), "\r\n")
	parts := strings.Split(lines[0], " ")
	if len(parts) != 3 || !strings.HasPrefix(parts[2], "HTTP/1.") || parts[0] == "" || parts[1] == "" {
		c.stop(fmt.Errorf("%w: request line %q", ErrNotHTTP1, truncate(lines[0])))
		return
	}
	h := RequestHead{Method: parts[0], Target: parts[1]}
	var (
		chunked, upgrade bool
		length           int64
		lengths          int
	)
	for _, line := range lines[1:] {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			c.stop(fmt.Errorf("%w: header line %q", ErrNotHTTP1, truncate(line)))
			return
		}
		value = strings.Trim(value, " \t")
		h.Fields = append(h.Fields, Field{Name: name, Value: value})
		switch strings.ToLower(name) {
		case "transfer-encoding":
			codings := strings.Split(value, ",")
			chunked = strings.EqualFold(strings.TrimSpace(codings[len(codings)-1]), "chunked")
		case "content-length":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 || n > maxContentSkip {
				c.stop(fmt.Errorf("%w: Content-Length %q", ErrNotHTTP1, truncate(value)))
				return
			}
			length = n
			lengths++
		case "upgrade":
			upgrade = true
		}
	}
	c.log.add(h)
	switch {
	case upgrade || h.Method == "CONNECT":
		c.stop(fmt.Errorf("%w: the connection may switch protocols", ErrNotHTTP1))
	case chunked:
		c.state = h1ChunkSize
	case lengths > 1:
		c.stop(fmt.Errorf("%w: several Content-Length fields", ErrNotHTTP1))
	case length > 0:
		c.state, c.left = h1Body, length
	}
}

func (c *HTTP1Capture) chunkSize(b []byte) {
	line := strings.TrimRight(string(b), "\r\n")
	line, _, _ = strings.Cut(line, ";") // chunk extensions
	n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
	if err != nil || n < 0 {
		c.stop(fmt.Errorf("%w: chunk size %q", ErrNotHTTP1, truncate(line)))
		return
	}
	if n == 0 {
		c.state = h1Trailers
		return
	}
	c.state, c.left = h1ChunkData, n
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
