package rotate

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/relay"
)

// proxyOpts shapes a test upstream's behaviour.
type proxyOpts struct {
	// auth, if set, is required: HTTP Basic or SOCKS5 username/password.
	auth func(user, pass string) bool
	// tls, if set, wraps the listener (an https:// upstream).
	tls *tls.Config
	// greeting is written in the same write as the 200 / SOCKS success reply.
	greeting []byte
	// reply, if set, answers CONNECT with this head instead of tunnelling.
	reply string
	// socksReply, if non-zero, answers SOCKS CONNECT with this code.
	socksReply byte
	// silent accepts connections and never answers.
	silent bool
	// forwardHeaders, if set, edits forwarded (absolute-form) requests the
	// way a transparent or anonymous proxy does; client is the address the
	// request came from.
	forwardHeaders func(h http.Header, client string)
}

// testProxy is an HTTP (CONNECT and absolute-form forward) or SOCKS5
// upstream that egresses from its own loopback address.
type testProxy struct {
	addr string // listen address
	ip   string // egress (and listen) address
	opts proxyOpts

	connects atomic.Int64 // tunnels or forward requests served
	accepted atomic.Int64 // connections accepted
	down     atomic.Bool  // when set, connections are closed at once
	egress   atomic.Pointer[string]
	headers  atomic.Pointer[func(h http.Header, client string)]
	mu       sync.Mutex
	users    []string // user names presented
	atyps    []byte   // SOCKS address types received
	hosts    []string // SOCKS target hosts received

	srv *testnet.Server // closes, at the end of the test, what it serves and dials
}

func startHTTPProxy(t testing.TB, ip string, opts proxyOpts) *testProxy {
	return startProxy(t, ip, opts, (*testProxy).serveHTTP)
}

func startSOCKSProxy(t testing.TB, ip string, opts proxyOpts) *testProxy {
	return startProxy(t, ip, opts, (*testProxy).serveSOCKS)
}

func startProxy(t testing.TB, ip string, opts proxyOpts, serve func(*testProxy, net.Conn)) *testProxy {
	ln := testnet.Listen(t, ip)
	if opts.tls != nil {
		ln = tls.NewListener(ln, opts.tls)
	}
	p := &testProxy{addr: ln.Addr().String(), ip: ip, opts: opts, srv: testnet.NewServer(t, ln)}
	p.egress.Store(&ip)
	if opts.forwardHeaders != nil {
		p.headers.Store(&opts.forwardHeaders)
	}
	p.srv.Serve(func(c net.Conn) {
		p.accepted.Add(1)
		switch {
		case p.down.Load():
		case p.opts.silent:
			_, _ = io.Copy(io.Discard, c)
		default:
			serve(p, c)
		}
	})
	return p
}

func (p *testProxy) seenUsers() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.users...)
}

func (p *testProxy) record(user string, atyp byte, host string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if user != "" {
		p.users = append(p.users, user)
	}
	if atyp != 0 {
		p.atyps = append(p.atyps, atyp)
		p.hosts = append(p.hosts, host)
	}
}

// dialTarget connects to target from the proxy's own address, tracked for
// shutdown.
func (p *testProxy) dialTarget(target string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(*p.egress.Load())}}
	c, err := d.Dial("tcp", target)
	if err != nil {
		return nil, err
	}
	if !p.srv.Track(c) {
		return nil, net.ErrClosed
	}
	return c, nil
}

func (p *testProxy) serveHTTP(c net.Conn) {
	br := bufio.NewReader(c)
	var upstream net.Conn // kept across forward requests on this connection
	var upBr *bufio.Reader
	defer func() {
		if upstream != nil {
			p.srv.Untrack(upstream)
		}
	}()
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if p.opts.auth != nil {
			user, pass, ok := parseBasic(req.Header.Get("Proxy-Authorization"))
			p.record(user, 0, "")
			if !ok || !p.opts.auth(user, pass) {
				_, _ = io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
				continue
			}
		}
		if req.Method == http.MethodConnect {
			p.tunnel(c, br, req.Host)
			return
		}
		// Absolute-form forward request.
		if upstream == nil {
			if upstream, err = p.dialTarget(req.URL.Host); err != nil {
				_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
				return
			}
			upBr = bufio.NewReader(upstream)
		}
		p.connects.Add(1)
		req.Header.Del("Proxy-Authorization")
		if edit := p.headers.Load(); edit != nil {
			client, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			(*edit)(req.Header, client)
		}
		if testnet.ForwardHTTP(c, upstream, upBr, req) != nil {
			return
		}
	}
}

func (p *testProxy) tunnel(c net.Conn, br *bufio.Reader, target string) {
	if p.opts.reply != "" {
		_, _ = io.WriteString(c, p.opts.reply)
		return
	}
	up, err := p.dialTarget(target)
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer p.srv.Untrack(up)
	p.connects.Add(1)
	head := append([]byte("HTTP/1.1 200 Connection established\r\n\r\n"), p.opts.greeting...)
	if _, err := c.Write(head); err != nil {
		return
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
	}
	_, _ = relay.Pipe(c, up, 0)
}

// setEgress makes the proxy leave from ip from now on.
func (p *testProxy) setEgress(ip string) { p.egress.Store(&ip) }

// setForwardHeaders replaces the header editing of forwarded requests; nil
// stops it.
func (p *testProxy) setForwardHeaders(f func(h http.Header, client string)) {
	if f == nil {
		p.headers.Store(nil)
		return
	}
	p.headers.Store(&f)
}

func parseBasic(h string) (user, pass string, ok bool) {
	enc, found := strings.CutPrefix(h, "Basic ")
	if !found {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}
