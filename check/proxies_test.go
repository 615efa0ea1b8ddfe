package check

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Test upstream proxies: real loopback servers speaking HTTP (CONNECT and
// absolute-form forwarding) or SOCKS5, each dialing out from its own
// 127.0.0.x so the judge tells them apart, with injected behaviour.

type proxyKind uint8

const (
	kindHTTP proxyKind = iota
	kindSOCKS5
)

// headerMode is what an HTTP proxy adds to the requests it forwards.
type headerMode uint8

const (
	headersNone        headerMode = iota // elite
	headersVia                           // anonymous: Via
	headersTransparent                   // Via and X-Forwarded-For with the client's address
)

type proxySpec struct {
	kind       proxyKind
	egress     string // 127.0.0.x the proxy dials from
	user, pass string // credentials it requires; "" for none
	headers    headerMode
	blackhole  bool             // accept and read, never answer
	garbage    bool             // answer anything with a line of junk
	cert       *tls.Certificate // serve behind TLS (HTTP only)
	deny       []string         // targets refused (HTTP 403, SOCKS reply 0x02)
	delay      time.Duration    // wait before answering a request
}

type testProxy struct {
	spec   proxySpec
	dialer net.Dialer
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// startProxy runs a proxy per spec on 127.0.0.1 and returns its address. It
// is stopped, every connection closed, at cleanup.
func startProxy(t *testing.T, spec proxySpec) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	if spec.cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*spec.cert}})
	}
	p := &testProxy{spec: spec, ln: ln, conns: make(map[net.Conn]struct{})}
	if spec.egress != "" {
		p.dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(spec.egress)}
	}
	p.dialer.Timeout = 5 * time.Second
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.stop)
	return ln.Addr().String()
}

func (p *testProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.serve(c)
		}()
	}
}

// track registers c for closing at stop; false (and c closed) once stopped.
func (p *testProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *testProxy) untrack(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *testProxy) stop() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *testProxy) serve(c net.Conn) {
	switch {
	case p.spec.blackhole:
		_, _ = io.Copy(io.Discard, c)
		return
	case p.spec.garbage:
		var buf [512]byte
		if _, err := c.Read(buf[:]); err != nil {
			return
		}
		_, _ = io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n")
		_, _ = io.Copy(io.Discard, c)
		return
	}
	if p.spec.kind == kindSOCKS5 {
		p.serveSOCKS5(c)
		return
	}
	p.serveHTTP(c)
}

// dial connects to target from the proxy's egress address, unless denied.
func (p *testProxy) dial(target string) (net.Conn, error) {
	if slices.Contains(p.spec.deny, target) {
		return nil, errDenied
	}
	tc, err := p.dialer.Dial("tcp", target)
	if err != nil {
		return nil, err
	}
	if !p.track(tc) {
		return nil, net.ErrClosed
	}
	return tc, nil
}

var errDenied = errors.New("denied by the test proxy")

func (p *testProxy) serveHTTP(c net.Conn) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if p.spec.delay > 0 {
		time.Sleep(p.spec.delay)
	}
	if p.spec.user != "" && !basicOK(req.Header.Get("Proxy-Authorization"), p.spec.user, p.spec.pass) {
		_, _ = io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	target := req.Host
	if req.Method != http.MethodConnect {
		target = req.URL.Host
	}
	if _, _, err := net.SplitHostPort(target); err != nil {
		target = net.JoinHostPort(target, "80")
	}
	tc, err := p.dial(target)
	if errors.Is(err, errDenied) {
		_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	defer p.untrack(tc)
	if req.Method == http.MethodConnect {
		_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		relay(c, br, tc)
		return
	}
	req.Header.Del("Proxy-Authorization")
	req.Header.Del("Proxy-Connection")
	switch p.spec.headers {
	case headersVia:
		req.Header.Add("Via", "1.1 test-proxy")
	case headersTransparent:
		client, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		req.Header.Add("Via", "1.1 test-proxy")
		req.Header.Add("X-Forwarded-For", client)
	}
	req.RequestURI = ""
	req.Close = true
	if err := req.Write(tc); err != nil {
		return
	}
	_, _ = io.Copy(c, tc)
}

func basicOK(header, user, pass string) bool {
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	return header == want
}

// relay copies both ways until either side ends; br holds bytes the client
// sent past its request.
func relay(c net.Conn, br *bufio.Reader, tc net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(c, tc)
		_ = c.Close()
	}()
	_, _ = io.Copy(tc, br)
	_ = tc.Close()
	<-done
}

func (p *testProxy) serveSOCKS5(c net.Conn) {
	br := bufio.NewReader(c)
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[0] != 5 {
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return
	}
	want := byte(0x00)
	if p.spec.user != "" {
		want = 0x02
	}
	if !slices.Contains(methods, want) {
		_, _ = c.Write([]byte{5, 0xff})
		return
	}
	_, _ = c.Write([]byte{5, want})
	if want == 0x02 {
		user, pass, ok := readUserPass(br)
		if !ok {
			return
		}
		if user != p.spec.user || pass != p.spec.pass {
			_, _ = c.Write([]byte{1, 1})
			return
		}
		_, _ = c.Write([]byte{1, 0})
	}
	target, ok := readSOCKSRequest(br)
	if !ok {
		return
	}
	if p.spec.delay > 0 {
		time.Sleep(p.spec.delay)
	}
	tc, err := p.dial(target)
	if err != nil {
		code := byte(0x01)
		switch {
		case errors.Is(err, errDenied):
			code = 0x02
		case errors.Is(err, syscall.ECONNREFUSED):
			code = 0x05
		}
		_, _ = c.Write([]byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	defer p.untrack(tc)
	_, _ = c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	relay(c, br, tc)
}

func readUserPass(br *bufio.Reader) (user, pass string, ok bool) {
	var v [2]byte
	if _, err := io.ReadFull(br, v[:]); err != nil || v[0] != 1 {
		return "", "", false
	}
	u := make([]byte, v[1])
	if _, err := io.ReadFull(br, u); err != nil {
		return "", "", false
	}
	n, err := br.ReadByte()
	if err != nil {
		return "", "", false
	}
	pw := make([]byte, n)
	if _, err := io.ReadFull(br, pw); err != nil {
		return "", "", false
	}
	return string(u), string(pw), true
}

func readSOCKSRequest(br *bufio.Reader) (string, bool) {
	var h [4]byte
	if _, err := io.ReadFull(br, h[:]); err != nil || h[0] != 5 || h[1] != 1 {
		return "", false
	}
	var host string
	switch h[3] {
	case 1, 4:
		ip := make([]byte, 4)
		if h[3] == 4 {
			ip = make([]byte, 16)
		}
		if _, err := io.ReadFull(br, ip); err != nil {
			return "", false
		}
		host = net.IP(ip).String()
	case 3:
		n, err := br.ReadByte()
		if err != nil {
			return "", false
		}
		name := make([]byte, n)
		if _, err := io.ReadFull(br, name); err != nil {
			return "", false
		}
		host = string(name)
	default:
		return "", false
	}
	var port [2]byte
	if _, err := io.ReadFull(br, port[:]); err != nil {
		return "", false
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))), true
}
