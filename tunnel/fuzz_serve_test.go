package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// socksMark is what the fuzz SOCKS handler answers, followed by the first
// byte it was handed.
const socksMark = 0xAA

// FuzzServeConn sends arbitrary bytes to a live Server, as a client on a
// loopback connection that then half-closes, covering the first-byte sniff
// and request head parsing together. Invariants: no panic (a panic in a
// connection goroutine kills the process); a first byte of 0x04 or 0x05 goes
// to the SOCKS handler, with that byte, and nothing else is written; any
// other input gets nothing or exactly one well-formed HTTP/1.1 error
// response that closes the connection; the Dialer (which refuses
// everything) is asked exactly when the first head parses, and then the
// answer is 403, never otherwise.
func FuzzServeConn(f *testing.F) {
	for _, s := range serveSeeds() {
		f.Add(s)
	}

	var dials atomic.Int64
	addr := serve(f, newServer(f, Config{Dialer: refusingDialer(&dials), SOCKS: socksMarker, Logger: zap.NewNop(),
		HeaderTimeout: 2 * time.Second, IdleTimeout: time.Second}))

	f.Fuzz(func(t *testing.T, data []byte) {
		before := dials.Load()
		resp, readErr := fuzzExchange(t, addr, data)
		checkServeReply(t, data, resp, readErr, dials.Load()-before)
	})
}

// serveSeeds are the inputs FuzzServeConn and FuzzServeTLSConn start from:
// the request head table, SOCKS greetings and the request shapes that take
// the server down its other paths.
func serveSeeds() [][]byte {
	var seeds [][]byte
	for _, c := range requestHeadCases {
		seeds = append(seeds, []byte(c.in))
	}
	for _, s := range []string{
		"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
		"\x04\x01\x00\x50\x7f\x00\x00\x01alice\x00",
		"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\nearly bytes",
		"\r\n\r\nGET http://127.0.0.1:1/ HTTP/1.1\r\n\r\n",
		"POST http://127.0.0.1:1/ HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
		"GET http://127.0.0.1:1/ HTTP/1.1\r\n\r\nGET http://127.0.0.1:2/ HTTP/1.1\r\n\r\n",
		"HEAD http://x/ HTTP/1.1\r\nProxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT [::1]:443 HTTP/1.0\r\n\r\n",
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// refusingDialer counts its dials in n and refuses every one as denied, so
// a head that parses is answered 403.
func refusingDialer(n *atomic.Int64) dial.Dialer {
	return dial.DialerFunc(func(_ context.Context, req *dial.Request) (*dial.Outbound, error) {
		n.Add(1)
		return nil, &dial.Error{Target: req.Target, Err: dial.ErrDenied}
	})
}

// socksMarker stands in for the SOCKS front end: it answers socksMark and
// the first byte it was handed, and ends the stream.
var socksMarker = StreamHandlerFunc(func(_ context.Context, conn net.Conn, first byte, done func()) {
	defer done()
	_, _ = conn.Write([]byte{socksMark, first})
})

// checkServeReply asserts FuzzServeConn's invariants on resp, what the
// server sent in reply to data until it closed (readErr a reset after it),
// given the dials data caused.
func checkServeReply(t *testing.T, data, resp []byte, readErr error, dialed int64) {
	t.Helper()
	if len(data) > 0 && (data[0] == 0x04 || data[0] == 0x05) {
		if !bytes.Equal(resp, []byte{socksMark, data[0]}) {
			t.Fatalf("SOCKS first byte: got %q", resp)
		}
		if dialed != 0 {
			t.Fatalf("SOCKS input reached the HTTP dialer")
		}
		return
	}
	if dialed > 1 {
		t.Fatalf("%d dials for one connection", dialed)
	}
	if parses := firstHeadParses(data, DefaultMaxHeadBytes); dialed == 1 && !parses {
		t.Fatalf("dialed for a head that does not parse: %q", data)
	}
	if len(resp) == 0 {
		if dialed == 1 && readErr == nil {
			t.Fatalf("dialed but answered nothing")
		}
		return
	}
	status, bodyLen, rest, ok := splitResponse(resp)
	if !ok {
		if readErr != nil {
			return // reset mid-reply; what arrived is a prefix
		}
		t.Fatalf("not an HTTP response: %q", resp)
	}
	want := 400
	if dialed == 1 {
		want = 403
	}
	if status != want {
		t.Fatalf("status %d, want %d (dialed %d) for %q: %q", status, want, dialed, data, resp)
	}
	// One reply, then the connection closes: nothing follows the
	// body (none for HEAD) but a reset.
	if readErr == nil && len(rest) != bodyLen && len(rest) != 0 {
		t.Fatalf("body of %d bytes, Content-Length %d: %q", len(rest), bodyLen, resp)
	}
}

// fuzzExchange writes data to addr, half-closes, and reads until the proxy
// closes. A reset after the proxy's reply is returned as the error.
func fuzzExchange(t *testing.T, addr string, data []byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = c.Write(data)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	resp, err := io.ReadAll(c)
	<-wrote
	if err != nil && !isReset(err) {
		t.Fatalf("reading the reply: %v (got %q)", err, resp)
	}
	return resp, err
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// firstHeadParses applies the server's framing to data: empty lines before
// a head are skipped, the head must end within limit and parse.
func firstHeadParses(data []byte, limit int) bool {
	for len(data) > 0 && (data[0] == '\n' || (data[0] == '\r' && len(data) > 1 && data[1] == '\n')) {
		if data[0] == '\r' {
			data = data[1:]
		}
		data = data[1:]
	}
	n := headEnd(data, 0)
	if n < 0 || n > limit {
		return false
	}
	var h head
	return h.parseRequest(data[:n]) == nil
}

// splitResponse checks that resp starts with an HTTP/1.1 status line of
// three digits and a complete head with Connection: close and a
// Content-Length, and returns the status, that length and what follows the
// head.
func splitResponse(resp []byte) (status, bodyLen int, rest []byte, ok bool) {
	const prefix = "HTTP/1.1 "
	end := bytes.Index(resp, []byte("\r\n\r\n"))
	if !bytes.HasPrefix(resp, []byte(prefix)) || end < len(prefix)+3 {
		return 0, 0, nil, false
	}
	status, err := strconv.Atoi(string(resp[len(prefix) : len(prefix)+3]))
	if err != nil || !bytes.Contains(resp[:end+2], []byte("\r\nConnection: close\r\n")) {
		return 0, 0, nil, false
	}
	_, after, found := bytes.Cut(resp[:end+2], []byte("\r\nContent-Length: "))
	if !found {
		return 0, 0, nil, false
	}
	cl, _, _ := bytes.Cut(after, []byte("\r\n"))
	bodyLen, err = strconv.Atoi(string(cl))
	if err != nil {
		return 0, 0, nil, false
	}
	return status, bodyLen, resp[end+4:], true
}
