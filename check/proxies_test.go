package check

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/relay"
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
	srv    *testnet.Server // closes, at the end of the test, what it serves and dials
}

// startProxy runs a proxy per spec on 127.0.0.1 and returns its address. It
// is stopped, every connection closed, at cleanup.
func startProxy(t *testing.T, spec proxySpec) string {
	t.Helper()
	ln := testnet.Listen(t, "127.0.0.1")
	if spec.cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*spec.cert}})
	}
	p := &testProxy{spec: spec}
	if spec.egress != "" {
		p.dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(spec.egress)}
	}
	p.dialer.Timeout = 5 * time.Second
	p.srv = testnet.Serve(t, ln, p.serve)
	return p.srv.Addr()
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
	if !p.srv.Track(tc) {
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
	defer p.srv.Untrack(tc)
	if req.Method == http.MethodConnect {
		_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		splice(c, br, tc)
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

// splice relays c and tc; br holds bytes the client sent past its request,
// written to tc first.
func splice(c net.Conn, br *bufio.Reader, tc net.Conn) {
	if early, _ := br.Peek(br.Buffered()); len(early) > 0 {
		if _, err := tc.Write(early); err != nil {
			return
		}
	}
	_, _ = relay.Pipe(c, tc, 0)
}

func (p *testProxy) serveSOCKS5(c net.Conn) {
	br := bufio.NewReader(c)
	methods, err := testnet.ReadSOCKS5Methods(br)
	if err != nil {
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
		user, pass, err := testnet.ReadSOCKS5UserPass(br)
		if err != nil {
			return
		}
		if user != p.spec.user || pass != p.spec.pass {
			_, _ = c.Write([]byte{1, 1})
			return
		}
		_, _ = c.Write([]byte{1, 0})
	}
	_, host, port, err := testnet.ReadSOCKS5Connect(br)
	if err != nil {
		return
	}
	if p.spec.delay > 0 {
		time.Sleep(p.spec.delay)
	}
	tc, err := p.dial(net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		code := byte(0x01)
		switch {
		case errors.Is(err, errDenied):
			code = 0x02
		case errors.Is(err, syscall.ECONNREFUSED):
			code = 0x05
		}
		_, _ = c.Write(testnet.SOCKS5Reply(code, nil))
		return
	}
	defer p.srv.Untrack(tc)
	_, _ = c.Write(testnet.SOCKS5Reply(0, nil))
	splice(c, br, tc)
}
