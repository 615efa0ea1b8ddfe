// Package relay moves bytes between two established connections: both
// directions at once, half-close aware, with an idle timeout, on the kernel's
// splice path whenever both ends are raw TCP connections.
//
// It is the one copy loop every front end (HTTP CONNECT, forward WebSocket
// upgrades, SOCKS, MITM pass-through) shares. It does not close the
// connections it is given: the caller owns them.
package relay

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
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
// network weather and also reported here.
func Pipe(client, server net.Conn, idle time.Duration) (Result, error) {
	var p pipe
	p.idle = idle
	p.last.Store(time.Now().UnixNano())
	var up direction
	done := make(chan struct{})
	go func() {
		defer close(done)
		up = p.copy(server, client)
	}()
	down := p.copy(client, server)
	<-done
	res := Result{Up: up.n, Down: down.n, Idle: up.idle || down.idle}
	return res, firstErr(up.err, down.err)
}

type pipe struct {
	idle time.Duration
	last atomic.Int64 // unix nanos of the last window that moved bytes
	// stopped is set when one direction fails, so the other stops too.
	stopped atomic.Bool
}

type direction struct {
	n    int64
	err  error
	idle bool
}

// copy moves src→dst in windows of the idle timeout: a read deadline ends each
// window, so the fast path (splice) is kept and activity is checked once per
// window rather than per read. A window that moved nothing ends the tunnel
// only when the other direction has been quiet for as long.
func (p *pipe) copy(dst, src net.Conn) direction {
	var d direction
	for {
		if p.idle > 0 {
			_ = src.SetReadDeadline(time.Now().Add(p.idle))
		}
		n, err := copyOnce(dst, src)
		d.n += n
		if n > 0 {
			p.last.Store(time.Now().UnixNano())
		}
		if err == nil { // EOF: pass the half-close on.
			closeWrite(dst)
			return d
		}
		if p.stopped.Load() {
			return d
		}
		if p.idle > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			if n > 0 || time.Since(time.Unix(0, p.last.Load())) < p.idle {
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

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyOnce copies until EOF or error. Between two *net.TCPConn, io.Copy uses
// splice(2). A source with its own WriteTo (a conn replaying bytes read
// ahead during a handshake, then handing over to its raw conn) keeps that
// path too. Otherwise a pooled buffer avoids a fresh 32 KiB per call.
func copyOnce(dst, src net.Conn) (int64, error) {
	if _, ok := dst.(*net.TCPConn); ok {
		switch s := src.(type) {
		case *net.TCPConn:
			return io.Copy(dst, s)
		case io.WriterTo:
			return s.WriteTo(dst)
		}
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return io.CopyBuffer(writerOnly{dst}, readerOnly{src}, *bp)
}

// writerOnly and readerOnly hide ReadFrom/WriteTo so io.CopyBuffer uses the
// buffer it is given instead of a fallback that allocates one.
type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
	return nil
}
