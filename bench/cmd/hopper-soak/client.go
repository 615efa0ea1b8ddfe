package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Client modes: how a request reaches the origin through hopper.
const (
	modeForward = "http-forward"
	modeConnect = "connect"
	modeSOCKS5  = "socks5"
)

// requestTimeout bounds one request from dial to the last body byte.
const requestTimeout = 30 * time.Second

// stats counts outcomes by mode and kind ("ok" or an error kind).
type stats struct {
	bytes atomic.Int64
	mu    sync.Mutex
	count map[[2]string]int64
}

func newStats() *stats { return &stats{count: make(map[[2]string]int64)} }

func (s *stats) add(mode, kind string) {
	s.mu.Lock()
	s.count[[2]string{mode, kind}]++
	s.mu.Unlock()
}

func (s *stats) totals() (ok, failed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, n := range s.count {
		if k[1] == "ok" {
			ok += n
		} else {
			failed += n
		}
	}
	return ok, failed
}

func (s *stats) byMode() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	type row struct{ ok, failed int64 }
	rows := map[string]*row{}
	for k, n := range s.count {
		r := rows[k[0]]
		if r == nil {
			r = &row{}
			rows[k[0]] = r
		}
		if k[1] == "ok" {
			r.ok += n
		} else {
			r.failed += n
		}
	}
	var out []string
	for _, m := range []string{modeForward, modeConnect, modeSOCKS5} {
		if r := rows[m]; r != nil {
			out = append(out, fmt.Sprintf("%-13s served %8d  failed %6d", m, r.ok, r.failed))
		}
	}
	return out
}

func (s *stats) errorKinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	type kv struct {
		k [2]string
		n int64
	}
	var list []kv
	for k, n := range s.count {
		if k[1] != "ok" {
			list = append(list, kv{k, n})
		}
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].n != list[j].n {
			return list[i].n > list[j].n
		}
		return list[i].k[0]+list[i].k[1] < list[j].k[0]+list[j].k[1]
	})
	out := make([]string, len(list))
	for i, e := range list {
		out[i] = fmt.Sprintf("%8d  %-13s %s", e.n, e.k[0], e.k[1])
	}
	return out
}

// client is one churning client: it opens a new connection per request
// (forward requests sometimes reuse one), from its own loopback address.
type client struct {
	id     int
	proxy  string
	origin *origin
	think  time.Duration
	st     *stats
	rng    *rand.Rand
	dialer net.Dialer
	http   *http.Client
}

// newClient spreads clients over 127.0.1.1-8, so that hopper's per-client
// accounting is exercised (25 clients each stay under its default limit).
func newClient(id int, proxy string, o *origin, think time.Duration, st *stats) *client {
	c := &client{id: id, proxy: proxy, origin: o, think: think, st: st,
		rng:    rand.New(rand.NewPCG(uint64(id), 7)),
		dialer: net.Dialer{LocalAddr: &net.TCPAddr{IP: loopbackIP(1, 1+id%8)}, Timeout: requestTimeout}}
	pu := &url.URL{Scheme: "http", Host: proxy}
	c.http = &http.Client{Timeout: requestTimeout, Transport: &http.Transport{
		Proxy:               http.ProxyURL(pu),
		DialContext:         c.dialer.DialContext,
		MaxIdleConnsPerHost: 1,
		DisableKeepAlives:   id%2 == 0,
	}}
	return c
}

func (c *client) run(ctx context.Context) {
	defer c.http.CloseIdleConnections()
	for ctx.Err() == nil {
		n := c.size()
		var mode, kind string
		switch x := c.rng.IntN(10); {
		case x < 4:
			mode, kind = modeForward, c.forward(ctx, n)
		case x < 7:
			mode, kind = modeConnect, c.connect(ctx, n)
		default:
			mode, kind = modeSOCKS5, c.socks5(ctx, n)
		}
		if ctx.Err() != nil && kind != "ok" {
			return // cut off by the end of the run, not a failure
		}
		c.st.add(mode, kind)
		if c.think > 0 {
			d := time.Duration(c.rng.ExpFloat64() * float64(c.think))
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
	}
}

// size picks a response size: mostly small, now and then a megabyte.
func (c *client) size() int {
	if c.rng.IntN(50) == 0 {
		return 1 << 20
	}
	return 1 + c.rng.IntN(16<<10)
}

func (c *client) forward(ctx context.Context, n int) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.origin.url(n), nil)
	if err != nil {
		return "bad request: " + err.Error()
	}
	if c.rng.IntN(4) == 0 {
		req.Header.Set("Hopper-Session", fmt.Sprintf("s%d", c.id%20))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return errKind(err)
	}
	defer resp.Body.Close()
	return c.body(resp, n)
}

// body checks a response and reads its body.
func (c *client) body(resp *http.Response, n int) string {
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return fmt.Sprintf("HTTP %d %s", resp.StatusCode, resp.Header.Get("Hopper-Error"))
	}
	got, err := io.Copy(io.Discard, resp.Body)
	c.st.bytes.Add(got)
	if err != nil {
		return "body: " + errKind(err)
	}
	if got != int64(n) {
		return "short body"
	}
	return "ok"
}

// connect opens a CONNECT tunnel and sends one GET through it.
func (c *client) connect(ctx context.Context, n int) string {
	conn, err := c.dialer.DialContext(ctx, "tcp", c.proxy)
	if err != nil {
		return "dial: " + errKind(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", c.origin.addr, c.origin.addr); err != nil {
		return errKind(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "CONNECT reply: " + errKind(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return fmt.Sprintf("HTTP %d %s", resp.StatusCode, resp.Header.Get("Hopper-Error"))
	}
	return c.getThrough(conn, br, n)
}

// getThrough sends GET /bytes over an established tunnel.
func (c *client) getThrough(conn net.Conn, br *bufio.Reader, n int) string {
	if _, err := fmt.Fprintf(conn, "GET /bytes?n=%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", n, c.origin.addr); err != nil {
		return "tunnel: " + errKind(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "tunnel: " + errKindOr(err, "malformed response")
	}
	defer resp.Body.Close()
	return c.body(resp, n)
}

// socks5 opens a SOCKS5 tunnel (sometimes with a session username) and
// sends one GET through it.
func (c *client) socks5(ctx context.Context, n int) string {
	conn, err := c.dialer.DialContext(ctx, "tcp", c.proxy)
	if err != nil {
		return "dial: " + errKind(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	br := bufio.NewReader(conn)
	user := ""
	if c.rng.IntN(3) == 0 {
		user = fmt.Sprintf("soak-session-%d", c.id%20)
	}
	if kind := socksHandshake(conn, br, user); kind != "" {
		return kind
	}
	ta, err := net.ResolveTCPAddr("tcp", c.origin.addr)
	if err != nil {
		return errKind(err)
	}
	req := append([]byte{5, 1, 0, 1}, ta.IP.To4()...)
	req = binary.BigEndian.AppendUint16(req, uint16(ta.Port))
	if _, err := conn.Write(req); err != nil {
		return errKind(err)
	}
	rep := make([]byte, 4)
	if _, err := io.ReadFull(br, rep); err != nil {
		return "SOCKS reply: " + errKind(err)
	}
	if rep[1] != 0 {
		return fmt.Sprintf("SOCKS reply %#02x", rep[1])
	}
	skip := map[byte]int{1: 4, 4: 16}[rep[3]]
	if rep[3] == 3 {
		l, err := br.ReadByte()
		if err != nil {
			return "SOCKS reply: " + errKind(err)
		}
		skip = int(l)
	}
	if _, err := br.Discard(skip + 2); err != nil {
		return "SOCKS reply: " + errKind(err)
	}
	return c.getThrough(conn, br, n)
}

// socksHandshake negotiates no-auth, or username/password when user is set;
// it returns "" on success, else the failure's kind.
func socksHandshake(conn net.Conn, br *bufio.Reader, user string) string {
	method := byte(0)
	if user != "" {
		method = 2
	}
	if _, err := conn.Write([]byte{5, 1, method}); err != nil {
		return errKind(err)
	}
	sel := make([]byte, 2)
	if _, err := io.ReadFull(br, sel); err != nil {
		return "SOCKS greeting: " + errKind(err)
	}
	if sel[1] != method {
		return fmt.Sprintf("SOCKS method %#02x", sel[1])
	}
	if method == 2 {
		msg := append([]byte{1, byte(len(user))}, user...)
		msg = append(msg, 1, 'x')
		if _, err := conn.Write(msg); err != nil {
			return errKind(err)
		}
		st := make([]byte, 2)
		if _, err := io.ReadFull(br, st); err != nil {
			return "SOCKS auth: " + errKind(err)
		}
		if st[1] != 0 {
			return fmt.Sprintf("SOCKS auth status %#02x", st[1])
		}
	}
	return ""
}

// errKind names a client-side error by class.
func errKind(err error) string { return errKindOr(err, "") }

// errKindOr is errKind, naming errors of no known class fallback (when set).
func errKindOr(err error, fallback string) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "connection closed early"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "out of local ports"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	if fallback != "" {
		return fallback
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return "other: " + msg
}
