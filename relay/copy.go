package relay

import (
	"io"
	"net"
	"sync"
)

// mover copies one direction.
type mover interface {
	// move copies until the source's EOF (nil error), an error or the
	// source's read deadline, and returns the bytes written.
	move() (int64, error)
}

// pickMover picks how src→dst is copied, once per direction. observed reports
// whether the mover records each transfer in p as it happens.
//
// In order: a raw TCP source on Linux waits holding nothing and splices
// when the destination is raw TCP too (tcpMover); a raw TCP pair elsewhere
// uses io.Copy; a source with its own WriteTo (a conn replaying bytes read
// ahead during a handshake, then handing over to its raw conn) keeps that
// path, so it can splice; anything else is copied through a pooled buffer.
func (p *pipe) pickMover(dst, src net.Conn) (m mover, observed bool) {
	if s, ok := src.(*net.TCPConn); ok {
		if m := newTCPMover(p, dst, s); m != nil {
			return m, true
		}
	}
	if _, ok := dst.(*net.TCPConn); ok {
		switch s := src.(type) {
		case *net.TCPConn:
			return ioCopy{dst, s}, false
		case io.WriterTo:
			return writeTo{dst, s}, false
		}
	}
	return buffered{dst, touchReader{src, p}}, true
}

type ioCopy struct {
	dst io.Writer
	src io.Reader
}

func (m ioCopy) move() (int64, error) { return io.Copy(m.dst, m.src) }

type writeTo struct {
	dst io.Writer
	src io.WriterTo
}

func (m writeTo) move() (int64, error) { return m.src.WriteTo(m.dst) }

// buffered copies through a pooled buffer.
type buffered struct {
	dst io.Writer
	src touchReader
}

func (m buffered) move() (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return io.CopyBuffer(writerOnly{m.dst}, m.src, *bp)
}

// bufSize is the pooled buffer's size: one read of a raw TCP source when
// data arrives, or one read of any other source. A read that fills it is
// taken as the start of a bulk transfer. 16 KiB is also the largest TLS
// record.
const bufSize = 16 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// touchReader records each read that returns bytes.
type touchReader struct {
	r io.Reader
	p *pipe
}

func (t touchReader) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	if n > 0 {
		t.p.touch()
	}
	return n, err
}

// writerOnly hides ReadFrom so io.CopyBuffer uses the buffer it is given
// instead of a fallback that allocates one (touchReader already hides
// WriteTo).
type writerOnly struct{ io.Writer }
