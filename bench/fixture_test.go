package bench

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

// testProxy is a minimal proxy for the harness's own tests: SOCKS5 (no
// auth, IPv4 CONNECT) and HTTP CONNECT on one port, plus absolute-form GET
// forwarding over one origin connection per client connection. upload, when
// set, replaces the client→origin copy of CONNECT tunnels (to play a proxy
// that loses bytes).
type testProxy struct {
	srv    *testnet.Server // closes, at the end of the test, what it serves and dials
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
	p.srv = testnet.NewServer(t, testnet.Listen(t, ""))
	p.srv.Serve(func(c net.Conn) {
		p.accepted.Add(1)
		p.serve(c)
	})
	return p.srv.Addr()
}

// dial connects to addr, tracked for closing at the end of the test.
func (p *testProxy) dial(addr string) (*net.TCPConn, error) {
	out, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if !p.srv.Track(out) {
		return nil, net.ErrClosed
	}
	return out.(*net.TCPConn), nil
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
		out, err := p.dial(req.Host)
		if err != nil {
			return
		}
		defer p.srv.Untrack(out)
		_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		p.relay(c, br, out)
		return
	}
	p.forward(c, br, req)
}

func (p *testProxy) serveSOCKS(c net.Conn, br *bufio.Reader) {
	if _, err := testnet.ReadSOCKS5Methods(br); err != nil {
		return
	}
	_, _ = c.Write([]byte{5, 0})
	atyp, host, port, err := testnet.ReadSOCKS5Connect(br)
	if err != nil || atyp != testnet.SOCKS5IPv4 {
		return
	}
	if p.socks != 0 {
		_, _ = c.Write(testnet.SOCKS5Reply(p.socks, nil))
		return
	}
	out, err := p.dial(net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return
	}
	defer p.srv.Untrack(out)
	_, _ = c.Write(testnet.SOCKS5Reply(0, out.LocalAddr().(*net.TCPAddr)))
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
	out, err := p.dial(req.URL.Host)
	if err != nil {
		return
	}
	defer p.srv.Untrack(out)
	obr := bufio.NewReader(out)
	for {
		if testnet.ForwardHTTP(c, out, obr, req) != nil {
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
