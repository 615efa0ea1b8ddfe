package bench

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testProxy is a minimal proxy for the harness's own tests: SOCKS5 (no
// auth, IPv4 CONNECT) and HTTP CONNECT on one port, plus absolute-form GET
// forwarding over one origin connection per client connection. upload, when
// set, replaces the client→origin copy of CONNECT tunnels (to play a proxy
// that loses bytes).
type testProxy struct {
	ln     net.Listener
	wg     sync.WaitGroup
	upload func(dst, src net.Conn)
	status string // CONNECT reply status line; empty: 200
	socks  byte   // SOCKS5 reply code; 0: success
	// linger, when set, delays passing each EOF on, as a proxy does that
	// ends a tunnel only at a timeout of its own; passed records when each
	// EOF was passed on.
	linger time.Duration
	mu     sync.Mutex
	passed []time.Time
	// accepted counts client connections.
	accepted atomic.Int64
}

// passOn half-closes c's write side, after linger.
func (p *testProxy) passOn(c net.Conn) {
	if p.linger > 0 {
		time.Sleep(p.linger)
		p.mu.Lock()
		p.passed = append(p.passed, time.Now())
		p.mu.Unlock()
	}
	_ = c.(*net.TCPConn).CloseWrite()
}

// firstPassedAfter is the earliest EOF passed on after t; the zero time if
// none was.
func (p *testProxy) firstPassedAfter(t time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first time.Time
	for _, at := range p.passed {
		if at.After(t) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}

func startTestProxy(t *testing.T, p *testProxy) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer c.Close()
				p.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		p.wg.Wait()
	})
	return ln.Addr().String()
}

func (p *testProxy) serve(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	if first[0] == 5 {
		p.serveSOCKS(c, br)
		return
	}
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method == http.MethodConnect {
		if p.status != "" {
			_, _ = io.WriteString(c, "HTTP/1.1 "+p.status+"\r\nContent-Length: 0\r\n\r\n")
			return
		}
		out, err := net.Dial("tcp", req.Host)
		if err != nil {
			return
		}
		defer out.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		p.relay(c, br, out)
		return
	}
	p.forward(c, br, req)
}

func (p *testProxy) serveSOCKS(c net.Conn, br *bufio.Reader) {
	var b [10]byte
	if _, err := io.ReadFull(br, b[:3]); err != nil {
		return
	}
	_, _ = c.Write([]byte{5, 0})
	if _, err := io.ReadFull(br, b[:10]); err != nil || b[3] != 1 {
		return
	}
	if p.socks != 0 {
		_, _ = c.Write([]byte{5, p.socks, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	addr := &net.TCPAddr{IP: net.IP(b[4:8]), Port: int(b[8])<<8 | int(b[9])}
	out, err := net.DialTCP("tcp", nil, addr)
	if err != nil {
		return
	}
	defer out.Close()
	la := out.LocalAddr().(*net.TCPAddr)
	_, _ = c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, byte(la.Port >> 8), byte(la.Port)})
	p.relay(c, br, out)
}

// relay copies both ways, half-closing each side on EOF.
func (p *testProxy) relay(client net.Conn, br *bufio.Reader, out net.Conn) {
	_ = client.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		src := &readerConn{Conn: client, r: br}
		if p.upload != nil {
			p.upload(out, src)
		} else {
			_, _ = io.Copy(out, src)
		}
		p.passOn(out)
	}()
	_, _ = io.Copy(client, out)
	p.passOn(client)
	<-done
}

type readerConn struct {
	net.Conn
	r io.Reader
}

func (c *readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// forward relays absolute-form GETs over one origin connection.
func (p *testProxy) forward(c net.Conn, br *bufio.Reader, req *http.Request) {
	out, err := net.Dial("tcp", req.URL.Host)
	if err != nil {
		return
	}
	defer out.Close()
	obr := bufio.NewReader(out)
	for {
		req.RequestURI = ""
		if err := req.Write(out); err != nil {
			return
		}
		resp, err := http.ReadResponse(obr, req)
		if err != nil {
			return
		}
		err = resp.Write(c)
		_ = resp.Body.Close()
		if err != nil {
			return
		}
		if req, err = http.ReadRequest(br); err != nil {
			return
		}
	}
}

// loseBytes forwards only the first keep bytes and swallows the rest.
func loseBytes(keep int64) func(dst, src net.Conn) {
	return func(dst, src net.Conn) {
		_, _ = io.CopyN(dst, src, keep)
		_, _ = io.Copy(io.Discard, src)
	}
}
