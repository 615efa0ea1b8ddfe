package fingerprint

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// Field is one header field as it arrived: the name spelled as the client
// sent it (always lower case over HTTP/2).
type Field struct {
	Name, Value string
}

// RequestHead is one request head as it arrived on the wire.
type RequestHead struct {
	// Method and Target are the request line's (HTTP/1.1) or the :method
	// and :path pseudo-headers (HTTP/2).
	Method, Target string
	// Pseudo lists the pseudo-header names in order (HTTP/2 only).
	Pseudo []string
	// Fields are the regular header fields in order, repeats included.
	Fields []Field
	// StreamID and Priority are the HEADERS frame's (HTTP/2 only; Priority
	// nil when the frame had no PRIORITY flag).
	StreamID uint32
	Priority *Priority
}

// Names returns the field names in order, as spelled on the wire.
func (h *RequestHead) Names() []string {
	out := make([]string, len(h.Fields))
	for i, f := range h.Fields {
		out[i] = f.Name
	}
	return out
}

// maxHeads bounds the heads a capture keeps unclaimed; older ones are
// dropped first.
const maxHeads = 64

// headLog keeps the request heads a capture saw until a handler claims
// them. Its methods are called with the capture's lock held.
type headLog struct {
	heads []RequestHead
}

func (l *headLog) add(h RequestHead) {
	if len(l.heads) == maxHeads {
		l.heads = slices.Delete(l.heads, 0, 1)
	}
	l.heads = append(l.heads, h)
}

// claim removes and returns the oldest head for (method, target) whose
// header names are those of names (lower case, Host and hop-by-hop framing
// aside); failing that, the oldest for (method, target).
func (l *headLog) claim(method, target string, names map[string]bool) (RequestHead, bool) {
	first := -1
	for i := range l.heads {
		h := &l.heads[i]
		if h.Method != method || h.Target != target {
			continue
		}
		if first < 0 {
			first = i
		}
		if sameNames(h.Fields, names) {
			first = i
			break
		}
	}
	if first < 0 {
		return RequestHead{}, false
	}
	h := l.heads[first]
	l.heads = slices.Delete(l.heads, first, first+1)
	return h, true
}

// ignoredInMatch are names a server may move out of the header map.
var ignoredInMatch = map[string]bool{"host": true, "transfer-encoding": true, "content-length": true, "trailer": true}

func sameNames(fields []Field, names map[string]bool) bool {
	seen := make(map[string]bool, len(fields))
	for _, f := range fields {
		n := strings.ToLower(f.Name)
		if ignoredInMatch[n] {
			continue
		}
		if !names[n] {
			return false
		}
		seen[n] = true
	}
	for n := range names {
		if !seen[n] && !ignoredInMatch[n] {
			return false
		}
	}
	return true
}

// headerNames is the lower-case name set of h.
func headerNames(h http.Header) map[string]bool {
	out := make(map[string]bool, len(h))
	for k := range h {
		out[strings.ToLower(k)] = true
	}
	return out
}

// Tee returns c with every byte read from it also written to w (a
// capture) before Read returns; writes, deadlines and Close go to c. When c
// has a ConnectionState method (a TLS connection) so does the result, so an
// HTTP server still sees the TLS state.
func Tee(c net.Conn, w io.Writer) net.Conn {
	t := teeConn{Conn: c, w: w}
	if _, ok := c.(connectionStater); ok {
		return &teeTLSConn{t}
	}
	return &t
}

type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

type teeConn struct {
	net.Conn
	w io.Writer
}

func (t *teeConn) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if n > 0 {
		_, _ = t.w.Write(p[:n])
	}
	return n, err
}

type teeTLSConn struct{ teeConn }

func (t *teeTLSConn) ConnectionState() tls.ConnectionState {
	return t.Conn.(connectionStater).ConnectionState()
}

// captureMu is embedded by the captures: a lock and the log of heads.
type captureMu struct {
	mu   sync.Mutex
	log  headLog
	fail error // why recording stopped; nil while it goes on
}

// Claim returns the head of the request r (as a server parsed it) and
// removes it from the capture: the oldest with r's method and target whose
// header names match r's. ok is false when the capture has none (it
// stopped, or the bytes did not arrive through it).
func (c *captureMu) Claim(r *http.Request) (head RequestHead, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.claim(r.Method, r.RequestURI, headerNames(r.Header))
}

// Err is why the capture stopped recording, or nil while it records.
func (c *captureMu) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fail
}
