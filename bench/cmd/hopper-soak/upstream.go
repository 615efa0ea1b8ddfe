package main

import (
	"bufio"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hopper-proxy/hopper/relay"
)

// profile says how often an upstream misbehaves, per connection.
type profile struct {
	name                    string
	fail, reset, stall, die float64 // probabilities; the rest is served well
}

// Fates of one upstream connection.
const (
	fateOK    = "ok"
	fateFail  = "fail"  // a refusal: HTTP 502 or SOCKS 0x01
	fateReset = "reset" // TCP reset before answering
	fateStall = "stall" // accepts, reads, never answers
	fateDie   = "die"   // answers, relays a little, then resets
)

var (
	healthy = profile{name: "healthy"}
	flaky   = profile{name: "flaky", fail: 0.05, reset: 0.05, stall: 0.02, die: 0.05}
	broken  = profile{name: "broken", fail: 0.4, reset: 0.4, stall: 0.2}
	dying   = profile{name: "dying", die: 0.5}
)

func (p profile) pick(rng *rand.Rand) string {
	x := rng.Float64()
	for _, f := range []struct {
		p    float64
		fate string
	}{{p.fail, fateFail}, {p.reset, fateReset}, {p.stall, fateStall}, {p.die, fateDie}} {
		if x < f.p {
			return f.fate
		}
		x -= f.p
	}
	return fateOK
}

// upstream is a loopback proxy (HTTP CONNECT and forward, or SOCKS5 CONNECT)
// that misbehaves per its profile.
type upstream struct {
	ln     net.Listener
	scheme string
	prof   profile

	mu    sync.Mutex
	rng   *rand.Rand
	conns map[net.Conn]struct{}
	fates map[string]*atomic.Int64
	wg    sync.WaitGroup
}

// startUpstreams starts n upstreams on 127.0.0.(10+i): two thirds healthy
// (every third of those SOCKS5), the rest flaky, broken or dying in turn.
func startUpstreams(n int) ([]*upstream, error) {
	faulty := []profile{flaky, broken, dying, flaky}
	var ups []*upstream
	for i := 0; i < n; i++ {
		prof, scheme := healthy, "http"
		if i >= n-n/3 {
			prof = faulty[(i-(n-n/3))%len(faulty)]
		}
		if i%3 == 2 {
			scheme = "socks5"
		}
		u, err := startUpstream(loopbackIP(0, 10+i).String(), scheme, prof, uint64(i))
		if err != nil {
			closeAll(ups)
			return nil, err
		}
		ups = append(ups, u)
	}
	return ups, nil
}

func startUpstream(ip, scheme string, prof profile, seed uint64) (*upstream, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, err
	}
	u := &upstream{ln: ln, scheme: scheme, prof: prof, rng: rand.New(rand.NewPCG(seed, 99)),
		conns: make(map[net.Conn]struct{}), fates: make(map[string]*atomic.Int64)}
	for _, f := range []string{fateOK, fateFail, fateReset, fateStall, fateDie} {
		u.fates[f] = new(atomic.Int64)
	}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		u.serve()
	}()
	return u, nil
}

func (u *upstream) addr() string { return u.ln.Addr().String() }

func (u *upstream) fateCounts() map[string]int64 {
	out := make(map[string]int64, len(u.fates))
	for k, v := range u.fates {
		if n := v.Load(); n > 0 {
			out[k] = n
		}
	}
	return out
}

func (u *upstream) close() {
	_ = u.ln.Close()
	u.mu.Lock()
	for c := range u.conns {
		_ = c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

func (u *upstream) serve() {
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.conns[c] = struct{}{}
		fate := u.prof.pick(u.rng)
		dieAfter := int64(1 + u.rng.IntN(32<<10))
		u.mu.Unlock()
		u.fates[fate].Add(1)
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer func() {
				_ = c.Close()
				u.mu.Lock()
				delete(u.conns, c)
				u.mu.Unlock()
			}()
			// A stalled handshake is bounded so that nothing lingers
			// past the run if hopper never gives up.
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			if u.scheme == "socks5" {
				serveSOCKS5(c, fate, dieAfter)
			} else {
				serveHTTP(c, fate, dieAfter)
			}
		}()
	}
}

// misbehave acts out a fate that needs no target; it reports false for
// fates that go on to dial (ok, die).
func misbehave(c net.Conn, fate string, refuse []byte) bool {
	switch fate {
	case fateReset:
		_ = c.(*net.TCPConn).SetLinger(0)
		return true
	case fateStall:
		_, _ = io.Copy(io.Discard, c)
		return true
	case fateFail:
		_, _ = c.Write(refuse)
		return true
	}
	return false
}

func serveHTTP(c net.Conn, fate string, dieAfter int64) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if misbehave(c, fate, []byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")) {
		return
	}
	if req.Method != http.MethodConnect {
		forwardHTTP(c, br, req)
		return
	}
	out, err := net.DialTimeout("tcp", req.Host, 5*time.Second)
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer out.Close()
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := out.Write(b); err != nil {
			return
		}
	}
	pipe(c, out, fate, dieAfter)
}

// forwardHTTP serves absolute-form requests on c, keep-alive, each through
// one connection to the origin.
func forwardHTTP(c net.Conn, br *bufio.Reader, req *http.Request) {
	var out net.Conn
	var obr *bufio.Reader
	defer func() {
		if out != nil {
			_ = out.Close()
		}
	}()
	for {
		if out == nil {
			host := req.URL.Host
			if req.URL.Port() == "" {
				host = net.JoinHostPort(req.URL.Hostname(), "80")
			}
			var err error
			if out, err = net.DialTimeout("tcp", host, 5*time.Second); err != nil {
				_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				return
			}
			obr = bufio.NewReader(out)
		}
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		if err := req.Write(out); err != nil {
			return
		}
		resp, err := http.ReadResponse(obr, req)
		if err != nil {
			return
		}
		err = resp.Write(c)
		resp.Body.Close()
		if err != nil || req.Close || resp.Close {
			return
		}
		if req, err = http.ReadRequest(br); err != nil {
			return
		}
	}
}

// pipe relays c and out; a dying connection resets c after dieAfter bytes
// toward the client.
func pipe(c, out net.Conn, fate string, dieAfter int64) {
	if fate != fateDie {
		_, _ = relay.Pipe(c, out, 0)
		return
	}
	go func() { _, _ = io.Copy(out, c) }()
	_, _ = io.CopyN(c, out, dieAfter)
	_ = c.(*net.TCPConn).SetLinger(0)
	_ = c.Close()
}

// serveSOCKS5 speaks just enough RFC 1928 for hopper: no authentication or
// username/password (any accepted), CONNECT to an IPv4, IPv6 or name.
func serveSOCKS5(c net.Conn, fate string, dieAfter int64) {
	br := bufio.NewReader(c)
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(br, hdr); err != nil || hdr[0] != 5 {
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return
	}
	method := byte(0)
	for _, m := range methods {
		if m == 2 {
			method = 2
		}
	}
	if _, err := c.Write([]byte{5, method}); err != nil {
		return
	}
	if method == 2 {
		if !skipUserPass(br) {
			return
		}
		if _, err := c.Write([]byte{1, 0}); err != nil {
			return
		}
	}
	target, ok := readSOCKS5Request(br)
	if !ok {
		return
	}
	if misbehave(c, fate, []byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0}) {
		return
	}
	out, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		_, _ = c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	defer out.Close()
	la := out.LocalAddr().(*net.TCPAddr)
	rep := append([]byte{5, 0, 0, 1}, la.IP.To4()...)
	rep = binary.BigEndian.AppendUint16(rep, uint16(la.Port))
	if _, err := c.Write(rep); err != nil {
		return
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := out.Write(b); err != nil {
			return
		}
	}
	pipe(c, out, fate, dieAfter)
}

func skipUserPass(br *bufio.Reader) bool {
	ver, err := br.ReadByte()
	if err != nil || ver != 1 {
		return false
	}
	for i := 0; i < 2; i++ {
		n, err := br.ReadByte()
		if err != nil {
			return false
		}
		if _, err := br.Discard(int(n)); err != nil {
			return false
		}
	}
	return true
}

func readSOCKS5Request(br *bufio.Reader) (string, bool) {
	head := make([]byte, 4)
	if _, err := io.ReadFull(br, head); err != nil || head[0] != 5 || head[1] != 1 {
		return "", false
	}
	var host string
	switch head[3] {
	case 1, 4:
		ip := make([]byte, map[byte]int{1: 4, 4: 16}[head[3]])
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
	port := make([]byte, 2)
	if _, err := io.ReadFull(br, port); err != nil {
		return "", false
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port)))), true
}
