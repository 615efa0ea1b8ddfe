package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Front is how the harness reaches a target: directly or through a proxy's
// front end.
type Front int

// The fronts. FrontDirect dials the target itself.
const (
	FrontDirect Front = iota
	FrontCONNECT
	FrontSOCKS5
)

func (f Front) String() string {
	switch f {
	case FrontDirect:
		return "direct"
	case FrontCONNECT:
		return "CONNECT"
	case FrontSOCKS5:
		return "SOCKS5"
	}
	return "front(" + strconv.Itoa(int(f)) + ")"
}

// Errors of the client side. Each is wrapped with detail.
var (
	// ErrHandshake: a proxy refused or garbled a CONNECT or SOCKS5 handshake.
	ErrHandshake = errors.New("bench: proxy handshake failed")
	// ErrBytesMismatch: what arrived differs from what was sent.
	ErrBytesMismatch = errors.New("bench: byte counts differ")
	// ErrHTTP: an HTTP response was not the 200 with a 1 KiB body expected.
	ErrHTTP = errors.New("bench: unexpected HTTP response")
)

// handshakeTimeout bounds one proxy handshake when ctx has no sooner deadline.
const handshakeTimeout = 10 * time.Second

// route is one way to reach the origins: a front and, unless direct, the
// proxy address it speaks to.
type route struct {
	front Front
	proxy string
	// intercepts marks a proxy that terminates TLS itself (the MITM
	// column): HTTPS clients then expect a certificate other than the
	// origin's, and the origin's through every other route.
	intercepts bool
}

// dial opens a tunnel to target ("127.0.0.1:port") along r. The returned
// conn is a raw *net.TCPConn unless the proxy sent bytes past its handshake
// reply, which are then read first.
func (r route) dial(ctx context.Context, target string) (net.Conn, error) {
	var d net.Dialer
	addr := target
	if r.front != FrontDirect {
		addr = r.proxy
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	var out net.Conn
	switch r.front {
	case FrontDirect:
		return c, nil
	case FrontCONNECT:
		out, err = connectHandshake(ctx, c, target)
	case FrontSOCKS5:
		out, err = socks5Handshake(ctx, c, target)
	default:
		err = fmt.Errorf("%w: unknown front %v", ErrHandshake, r.front)
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return out, nil
}

// withDeadline bounds a handshake on c by ctx (its deadline and its
// cancellation) and handshakeTimeout; the returned function clears the
// deadline.
func withDeadline(ctx context.Context, c net.Conn) func() {
	dl := time.Now().Add(handshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = c.SetDeadline(dl)
	stop := interruptOnDone(ctx, c)
	return func() {
		stop()
		_ = c.SetDeadline(time.Time{})
	}
}

// interruptOnDone makes blocked reads and writes on c return when ctx ends,
// until the returned function is called.
func interruptOnDone(ctx context.Context, c net.Conn) func() {
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	return func() { stop() }
}

// connectHandshake sends an HTTP CONNECT for target on c and reads the reply
// head (RFC 9110 section 9.3.6).
func connectHandshake(ctx context.Context, c net.Conn, target string) (net.Conn, error) {
	defer withDeadline(ctx, c)()
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return nil, fmt.Errorf("%w: CONNECT write: %w", ErrHandshake, err)
	}
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			return nil, fmt.Errorf("%w: CONNECT reply head over %d bytes", ErrHandshake, cap(buf))
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if end := bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
			if code := statusCode(buf); code != 200 {
				return nil, fmt.Errorf("%w: CONNECT answered %d", ErrHandshake, code)
			}
			return withPrefix(c, buf[end+4:]), nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: CONNECT reply: %w", ErrHandshake, err)
		}
	}
}

// statusCode parses "HTTP/1.x NNN ..." and returns NNN, or 0.
func statusCode(head []byte) int {
	_, rest, ok := bytes.Cut(head, []byte(" "))
	if !ok || len(rest) < 3 {
		return 0
	}
	code, err := strconv.Atoi(string(rest[:3]))
	if err != nil {
		return 0
	}
	return code
}

// socks5Handshake negotiates "no authentication" and a CONNECT to target, an
// IPv4 literal with port (RFC 1928).
func socks5Handshake(ctx context.Context, c net.Conn, target string) (net.Conn, error) {
	defer withDeadline(ctx, c)()
	ap, err := netipAddrPort(target)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return nil, fmt.Errorf("%w: SOCKS5 greeting: %w", ErrHandshake, err)
	}
	var b [262]byte
	if _, err := readFull(c, b[:2]); err != nil {
		return nil, fmt.Errorf("%w: SOCKS5 method: %w", ErrHandshake, err)
	}
	if b[0] != 5 || b[1] != 0 {
		return nil, fmt.Errorf("%w: SOCKS5 method reply %#x %#x", ErrHandshake, b[0], b[1])
	}
	ip := ap.Addr().As4()
	req := []byte{5, 1, 0, 1, ip[0], ip[1], ip[2], ip[3], byte(ap.Port() >> 8), byte(ap.Port())}
	if _, err := c.Write(req); err != nil {
		return nil, fmt.Errorf("%w: SOCKS5 request: %w", ErrHandshake, err)
	}
	if _, err := readFull(c, b[:5]); err != nil {
		return nil, fmt.Errorf("%w: SOCKS5 reply: %w", ErrHandshake, err)
	}
	if b[0] != 5 || b[1] != 0 {
		return nil, fmt.Errorf("%w: SOCKS5 reply code %#x", ErrHandshake, b[1])
	}
	// The fifth byte is the first of the bound address (or its length).
	var rest int
	switch b[3] {
	case 1:
		rest = 4 - 1 + 2
	case 4:
		rest = 16 - 1 + 2
	case 3:
		rest = int(b[4]) + 2
	default:
		return nil, fmt.Errorf("%w: SOCKS5 reply address type %#x", ErrHandshake, b[3])
	}
	if _, err := readFull(c, b[:rest]); err != nil {
		return nil, fmt.Errorf("%w: SOCKS5 bound address: %w", ErrHandshake, err)
	}
	return c, nil
}

// prefixConn serves bytes a proxy sent past its handshake reply before
// reading from the connection.
type prefixConn struct {
	*net.TCPConn
	prefix []byte
}

func withPrefix(c net.Conn, rest []byte) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if len(rest) == 0 || !ok {
		return c
	}
	return &prefixConn{TCPConn: tc, prefix: append([]byte(nil), rest...)}
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.TCPConn.Read(b)
}

// WriteTo keeps io.Copy from skipping the prefix through the embedded
// conn's WriteTo.
func (p *prefixConn) WriteTo(w io.Writer) (int64, error) {
	var n int64
	if len(p.prefix) > 0 {
		m, err := w.Write(p.prefix)
		n += int64(m)
		p.prefix = p.prefix[m:]
		if err != nil {
			return n, err
		}
	}
	m, err := p.TCPConn.WriteTo(w)
	return n + m, err
}

func readFull(c net.Conn, b []byte) (int, error) { return io.ReadFull(c, b) }

// netipAddrPort parses an IPv4 "a.b.c.d:port" target.
func netipAddrPort(target string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil || !ap.Addr().Is4() {
		return netip.AddrPort{}, fmt.Errorf("%w: SOCKS5 target %q is not IPv4:port", ErrHandshake, target)
	}
	return ap, nil
}
