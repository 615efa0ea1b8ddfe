package rotate

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// aLongTimeAgo is a deadline in the past: setting it makes blocked reads and
// writes on a connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

// withDeadline runs a handshake on c bounded by ctx: ctx's deadline becomes
// c's, and ctx's cancellation poisons c's deadline so a blocked read or write
// returns. The handshake runs in the calling goroutine; no goroutine is
// started unless ctx ends meanwhile. On return c has no deadline, unless ctx
// ended, in which case ctx's error is returned and c must be closed.
func withDeadline(ctx context.Context, c net.Conn, handshake func() error) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(aLongTimeAgo) })
	err := handshake()
	if !stop() {
		// The poisoning has run or is running: even a completed handshake
		// leaves a connection with a deadline in the past.
		return ctx.Err()
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	_ = c.SetDeadline(time.Time{})
	return nil
}

// replayConn returns bytes an upstream sent right after its handshake reply,
// which were read ahead into a buffer, before reading from the connection
// again. It is only used when such bytes exist; otherwise the raw connection
// is handed out so relaying keeps the splice path.
type replayConn struct {
	net.Conn
	drained atomic.Bool
	mu      sync.Mutex
	buf     []byte
}

func newReplayConn(c net.Conn, pending []byte) net.Conn {
	if len(pending) == 0 {
		return c
	}
	return &replayConn{Conn: c, buf: append([]byte(nil), pending...)}
}

func (c *replayConn) Read(p []byte) (int, error) {
	if !c.drained.Load() {
		c.mu.Lock()
		if len(c.buf) > 0 && len(p) > 0 {
			n := copy(p, c.buf)
			c.buf = c.buf[n:]
			if len(c.buf) == 0 {
				c.drained.Store(true)
			}
			c.mu.Unlock()
			return n, nil
		}
		if len(c.buf) == 0 {
			c.drained.Store(true)
		}
		c.mu.Unlock()
	}
	return c.Conn.Read(p)
}

// WriteTo writes the pending bytes, then copies the rest of the connection
// with io.Copy, which splices when both ends are TCP connections.
func (c *replayConn) WriteTo(w io.Writer) (int64, error) {
	var n int64
	c.mu.Lock()
	pending := c.buf
	c.buf = nil
	c.drained.Store(true)
	c.mu.Unlock()
	if len(pending) > 0 {
		m, err := w.Write(pending)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	m, err := io.Copy(w, c.Conn)
	return n + m, err
}

// CloseWrite half-closes the connection (shuts down its write side).
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// NetConn returns the wrapped connection, as tls.Conn.NetConn does.
func (c *replayConn) NetConn() net.Conn { return c.Conn }
