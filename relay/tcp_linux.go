//go:build linux

package relay

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpMover copies from a raw TCP source without holding a buffer or a pipe
// while it waits: the runtime's poller parks the goroutine until the socket
// is readable, then one read(2) fills a pooled buffer that goes back right
// after the write. A read that fills the buffer means more is queued: when
// dst is raw TCP too, a splice burst moves the rest through a pooled pipe
// (splice_linux.go).
type tcpMover struct {
	p   *pipe
	dst net.Conn
	src *net.TCPConn
	rc  syscall.RawConn
	// wc is dst's RawConn when dst is raw TCP, else nil: no bursts.
	wc syscall.RawConn

	// Results of the last callback.
	buf   *[]byte // tryRead's buffer
	n     int
	errno error

	// The callback bound once, so waiting allocates nothing.
	tryReadFn func(fd uintptr) bool
	// sp is made at the first burst: most tunnels never have one, and an
	// idle tunnel should not carry its fields.
	sp *splicer
}

// newTCPMover returns nil when src's descriptor is unavailable.
func newTCPMover(p *pipe, dst net.Conn, src *net.TCPConn) *tcpMover {
	rc, err := src.SyscallConn()
	if err != nil {
		return nil
	}
	m := &tcpMover{p: p, dst: dst, src: src, rc: rc}
	m.tryReadFn = m.tryRead
	if d, ok := dst.(*net.TCPConn); ok {
		if wc, err := d.SyscallConn(); err == nil {
			m.wc = wc
		}
	}
	return m
}

func (m *tcpMover) move() (int64, error) {
	var total int64
	for {
		// Wait for data, EOF or an error (or the read deadline).
		if err := m.rc.Read(m.tryReadFn); err != nil {
			return total, err
		}
		bp, n := m.buf, m.n
		m.buf = nil
		if m.errno != nil || n == 0 {
			bufPool.Put(bp)
			if m.errno != nil {
				return total, opError("read", m.src, m.errno)
			}
			return total, nil // EOF
		}
		m.p.touch()
		w, err := m.dst.Write((*bp)[:n])
		bufPool.Put(bp)
		total += int64(w)
		if err != nil {
			return total, err
		}
		if n < bufSize || m.wc == nil {
			continue // the socket is most likely drained: wait again.
		}
		moved, eof, err := m.burst()
		total += moved
		if err != nil || eof {
			return total, err
		}
	}
}

// tryRead is the RawConn.Read callback: one non-blocking read into a pooled
// buffer. When the socket has nothing the buffer goes back and the runtime
// parks the goroutine until the socket is readable, then calls again.
func (m *tcpMover) tryRead(fd uintptr) bool {
	bp := bufPool.Get().(*[]byte)
	for {
		n, err := unix.Read(int(fd), *bp)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			bufPool.Put(bp)
			return false
		}
		m.buf, m.n, m.errno = bp, n, err
		return true
	}
}

// opError describes a failed system call on c the way package net would.
func opError(op string, c net.Conn, errno error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}
