// Package relay moves bytes between two established connections: both
// directions at once, half-close aware, with an idle timeout, on the kernel's
// splice path whenever both ends are raw TCP connections.
//
// It is the one copy loop every front end (HTTP CONNECT, forward WebSocket
// upgrades, SOCKS, MITM pass-through) shares. It does not close the
// connections it is given: the caller owns them.
//
// # Cost of an idle tunnel
//
// On Linux, a direction whose source is a raw *net.TCPConn waits for data
// holding neither a buffer nor a pipe: it parks in the runtime's poller and
// only then takes a pooled buffer for one read(2). A read that fills the
// buffer means more is queued, so the direction switches to splice(2)
// through a pooled pipe and returns the pipe as soon as the socket would
// block with the pipe drained. An idle tunnel therefore costs its two
// sockets, two parked goroutines and a few hundred bytes of heap; pipes and
// buffers are held only while data is in flight. Through Start those two
// goroutines are new ones with small stacks, rather than a caller that grew
// its stack during a handshake. Other sources (a TLS conn, a conn replaying
// bytes it read ahead) are copied with a pooled buffer or through their own
// WriteTo, as io.Copy would; on other systems raw TCP pairs use io.Copy.
//
// # Idle timeout
//
// A tunnel ends when nothing has moved in either direction for the idle
// timeout. Raw TCP sources (on Linux) and buffered sources record each
// transfer as it happens, so such a tunnel ends within scheduling delay of
// the timeout after its last byte. A direction copied by io.Copy or a
// source's own WriteTo reports its bytes only when a window of the idle
// timeout ends; while one runs, the tunnel ends up to three timeouts after
// its last byte, and only after a silence of at least one.
package relay

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// Result counts what moved. Up is client→server, Down server→client.
type Result struct {
	Up, Down int64
	// Idle is set when the tunnel ended because nothing moved for the idle
	// timeout.
	Idle bool
}

// Pipe relays between client and server until both directions reach EOF, one
// fails, or nothing moves in either direction for idle (zero: no limit). On
// EOF from one side it half-closes the other side's write half and keeps the
// opposite direction flowing. The error is the first failure other than EOF
// or the idle timeout; a reset by the peer after its data arrived is normal
// network weather and also reported here. One direction runs in a new
// goroutine, the other in the caller's; both have ended when Pipe returns.
func Pipe(client, server net.Conn, idle time.Duration) (Result, error) {
	p := &pipe{idle: idle, start: time.Now()}
	var up direction
	done := make(chan struct{})
	go func() {
		defer close(done)
		up = p.copy(server, client)
	}()
	down := p.copy(client, server)
	<-done
	return result(up, down)
}

// Start is Pipe on two goroutines of its own: it returns at once, and done
// runs on one of them with Pipe's results once both directions have ended.
// A front end that hands its tunnel over this way and returns lets its
// handshake goroutine go, with the stack the handshake grew: an idle tunnel
// then holds two goroutines that never grew theirs (a few KiB less per
// tunnel than a caller parked in Pipe).
func Start(client, server net.Conn, idle time.Duration, done func(Result, error)) {
	t := &started{pipe: pipe{idle: idle, start: time.Now()}, done: done}
	t.running.Store(2)
	go t.run(server, client, &t.up)
	go t.run(client, server, &t.down)
}

// started is the state of one Start.
type started struct {
	pipe
	up, down direction
	// running counts directions not yet ended; the last one calls done.
	running atomic.Int32
	done    func(Result, error)
}

func (t *started) run(dst, src net.Conn, d *direction) {
	*d = t.copy(dst, src)
	if t.running.Add(-1) == 0 {
		t.done(result(t.up, t.down))
	}
}

func result(up, down direction) (Result, error) {
	res := Result{Up: up.n, Down: down.n, Idle: up.idle || down.idle}
	return res, firstErr(up.err, down.err)
}

// pipe is the state both directions of one Pipe share.
type pipe struct {
	idle  time.Duration
	start time.Time // monotonic base for last
	// last is when bytes last moved either way, as nanoseconds since start.
	last atomic.Int64
	// opaque counts running directions whose bytes are seen only when
	// their window ends (see copy).
	opaque atomic.Int32
	// stopped is set when one direction fails, so the other stops too.
	stopped atomic.Bool
}

type direction struct {
	n    int64
	err  error
	idle bool
}

// touch records that bytes moved now.
func (p *pipe) touch() { p.last.Store(int64(time.Since(p.start))) }

// quiet is how long nothing has moved either way.
func (p *pipe) quiet() time.Duration { return time.Since(p.start) - time.Duration(p.last.Load()) }

// limit is how long the record must show the tunnel quiet before a
// direction ends it: the idle timeout, or twice that while the other
// direction is opaque. Its bytes of the current window are not in the
// record yet, but it reported its previous window, so a record quiet for
// twice the timeout still means nothing moved for at least the timeout.
func (p *pipe) limit(opaque bool) time.Duration {
	others := p.opaque.Load()
	if opaque {
		others--
	}
	if others > 0 {
		return 2 * p.idle
	}
	return p.idle
}

// copy moves src→dst in windows bounded by a read deadline, which is how an
// idle tunnel is noticed without a timer per read. An observed direction
// records each transfer as it happens and ends its window when the record
// would reach the limit. An opaque one (io.Copy or a source's own WriteTo)
// cannot, so it uses windows of the idle timeout and records its bytes when
// each ends.
func (p *pipe) copy(dst, src net.Conn) direction {
	move, observed := p.pickMover(dst, src)
	if !observed {
		p.opaque.Add(1)
		defer p.opaque.Add(-1)
	}
	var d direction
	for {
		if p.idle > 0 {
			window := p.idle
			if observed {
				window = p.limit(false) - p.quiet()
			}
			_ = src.SetReadDeadline(time.Now().Add(window))
		}
		// A stop between the last check and the deadline above would have
		// been undone by it: look again.
		if p.stopped.Load() {
			return d
		}
		n, err := move.move()
		d.n += n
		if n > 0 && !observed {
			p.touch()
		}
		if err == nil { // EOF: pass the half-close on.
			closeWrite(dst)
			return d
		}
		if p.stopped.Load() {
			return d
		}
		if p.idle > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			if p.active(observed, n) {
				continue
			}
			d.idle = true
		} else {
			d.err = err
		}
		// Unblock the other direction: its reads and writes fail at once.
		if p.stopped.CompareAndSwap(false, true) {
			_ = src.SetDeadline(time.Unix(1, 0))
			_ = dst.SetDeadline(time.Unix(1, 0))
		}
		return d
	}
}

// active reports, when a direction's window ends having moved n bytes,
// whether the tunnel is still in use.
func (p *pipe) active(observed bool, n int64) bool {
	if !observed && n > 0 {
		return true
	}
	return p.quiet() < p.limit(!observed)
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

// firstErr is the first of a and b that is a failure: neither nil nor a
// passed deadline (an idle tunnel, or one direction stopped by the other).
func firstErr(a, b error) error {
	for _, err := range [2]error{a, b} {
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
	return nil
}
