package dial

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// Direct dials targets itself, optionally from a fixed local address.
// The zero value dials from the system's choice of source address.
type Direct struct {
	// LocalIP, if valid, is the source address of every connection
	// (direct://127.0.0.2). Nil means the system chooses.
	LocalIP net.IP
	// Idle, if set, keeps forward-request connections for reuse.
	Idle *IdlePool
	// Resolver resolves target names; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

var _ Dialer = (*Direct)(nil)

// Label is the redacted name used in logs: "direct" or "direct@IP".
func (d *Direct) Label() string {
	if d.LocalIP == nil {
		return "direct"
	}
	return "direct@" + d.LocalIP.String()
}

// Dial connects to req.Target. For forward requests it first offers an idle
// connection to the same target.
func (d *Direct) Dial(ctx context.Context, req *Request) (*Outbound, error) {
	label := d.Label()
	if req.Forward && d.Idle != nil {
		if c := d.Idle.Get(label + "|" + req.Target); c != nil {
			return d.outbound(c, label, req.Target, 0, true), nil
		}
	}
	start := time.Now()
	c, err := dialTCP(ctx, d.LocalIP, req.Target, req.Guard, d.Resolver)
	if err != nil {
		return nil, &Error{Upstream: label, Target: req.Target, Attempt: 1, Err: err}
	}
	return d.outbound(c, label, req.Target, time.Since(start), false), nil
}

func (d *Direct) outbound(c net.Conn, label, target string, elapsed time.Duration, reused bool) *Outbound {
	o := &Outbound{
		Conn:     c,
		Upstream: label,
		Attempts: []Attempt{{Upstream: label, Elapsed: elapsed}},
		Reused:   reused,
	}
	if d.Idle != nil {
		key := label + "|" + target
		o.Release = func(o *Outbound, reusable bool) {
			if reusable {
				d.Idle.Put(key, o.Conn)
				return
			}
			_ = o.Conn.Close()
		}
	}
	return o
}

// DialTCP connects to target (host:port, host possibly a name) from localIP
// (nil: any). The context bounds resolution and connect. The result is a
// *net.TCPConn with Nagle off, as interactive relaying wants. TCP keepalive
// is off: tunnels end by the relay's idle timeout, and the setsockopt calls
// cost measurably on short connections.
func DialTCP(ctx context.Context, localIP net.IP, target string) (net.Conn, error) {
	return DialTCPGuard(ctx, localIP, target, nil)
}

// DialTCPGuard is DialTCP that lets guard (nil: none) veto each resolved
// address before connecting to it.
func DialTCPGuard(ctx context.Context, localIP net.IP, target string, guard func(netip.Addr) error) (net.Conn, error) {
	return dialTCP(ctx, localIP, target, guard, nil)
}

func dialTCP(ctx context.Context, localIP net.IP, target string, guard func(netip.Addr) error, r *net.Resolver) (net.Conn, error) {
	d := net.Dialer{KeepAlive: -1, Resolver: r}
	if guard != nil {
		d.ControlContext = func(_ context.Context, _, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: unparsable address %q", ErrDenied, address)
			}
			return guard(ap.Addr().Unmap())
		}
	}
	if localIP != nil {
		d.LocalAddr = &net.TCPAddr{IP: localIP}
	}
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ErrTimeout, err)
		}
		return nil, err
	}
	return c, nil
}
