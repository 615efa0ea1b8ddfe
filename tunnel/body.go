package tunnel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

const (
	// smallWrite is the most body bytes appended to a head so that both
	// leave in one write.
	smallWrite = 16 << 10
	// spliceMin is the least body left for which copying skips the buffer
	// and goes connection to connection (splice(2) between TCP conns).
	spliceMin = 32 << 10
)

// errUnexpectedEOF: a peer closed before the end of a framed body.
var errUnexpectedEOF = fmt.Errorf("%w: body ended early", io.ErrUnexpectedEOF)

// sideError tells which connection a body copy failed on.
type sideError struct {
	src bool // reading the sender (false: writing to the receiver, or unknown after a splice)
	err error
}

func (e *sideError) Error() string { return e.err.Error() }
func (e *sideError) Unwrap() error { return e.err }

func srcErr(err error) error { return &sideError{src: true, err: err} }
func dstErr(err error) error { return &sideError{err: err} }

// isSrcErr reports whether err came from reading the sender.
func isSrcErr(err error) bool {
	var se *sideError
	return errors.As(err, &se) && se.src
}

// bodyCopy moves one message from src to dst: an already rendered head
// (prefix), then the body as fr delimits it, streamed and never held whole.
// Small bodies already buffered leave in the same write as the head; large
// stretches go straight from connection to connection so the kernel can
// splice them. Each wait is bounded by idle: a read or write that makes no
// progress for that long fails. The deadlines it sets are its own to clear
// (disarm); those it finds are left as they are until it sets its own.
type bodyCopy struct {
	dst    net.Conn
	src    *reader
	fr     framing
	idle   time.Duration
	prefix []byte
	// readAll, if set, is set as soon as the last body byte has been read
	// from src (before it is written on).
	readAll *atomic.Bool
	// stop, if set, aborts the copy: once it is true every wait fails at
	// once, and arm never pushes a deadline back out.
	stop *atomic.Bool

	n int64 // body bytes written
	// When each side's deadline was last set, and whether it was set at
	// all (disarm clears those). A body already buffered with its head
	// needs the write side only.
	armedR, armedW     time.Time
	touchedR, touchedW bool
	pending            []byte
}

// run copies the message; it returns nil once the body ended as framed
// (for bodyClose: src reached EOF).
func (bc *bodyCopy) run() error {
	var cs chunkScanner
	remain := bc.fr.n
	bc.pending = bc.prefix
	for {
		b := bc.src.buffered()
		take, done := 0, false
		switch bc.fr.kind {
		case bodyNone:
			done = true
		case bodyLength:
			take = int(min(int64(len(b)), remain))
			remain -= int64(take)
			done = remain == 0
		case bodyChunked:
			var err error
			if take, done, err = cs.scan(b); err != nil {
				return srcErr(err)
			}
		case bodyClose:
			take = len(b)
		}
		if done && bc.readAll != nil {
			bc.readAll.Store(true)
		}
		if err := bc.emit(b[:take]); err != nil {
			return err
		}
		bc.src.consume(take)
		if done {
			return bc.flush()
		}
		if err := bc.flush(); err != nil {
			return err
		}

		// Large stretch with nothing buffered: connection to connection.
		var left int64 = -1
		switch bc.fr.kind {
		case bodyLength:
			left = remain
		case bodyChunked:
			left = cs.dataLeft()
		}
		if len(bc.src.buffered()) == 0 && (left >= spliceMin || bc.fr.kind == bodyClose) {
			n, eof, err := bc.direct(left)
			bc.n += n
			switch bc.fr.kind {
			case bodyLength:
				remain -= n
			case bodyChunked:
				cs.skipData(n)
			}
			if err != nil {
				return err
			}
			if eof {
				if bc.fr.kind == bodyClose {
					return nil
				}
				return srcErr(errUnexpectedEOF)
			}
			if bc.fr.kind == bodyLength && remain == 0 {
				if bc.readAll != nil {
					bc.readAll.Store(true)
				}
				return nil
			}
			continue
		}

		bc.armRead()
		if _, err := bc.src.fill(); err != nil {
			if errors.Is(err, io.EOF) {
				if bc.fr.kind == bodyClose {
					return nil
				}
				return srcErr(errUnexpectedEOF)
			}
			return srcErr(err)
		}
	}
}

// emit queues b after pending, writing when the batch gets large.
func (bc *bodyCopy) emit(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	bc.n += int64(len(b))
	if len(bc.pending)+len(b) <= smallWrite {
		bc.pending = append(bc.pending, b...)
		return nil
	}
	bc.armWrite()
	bufs := net.Buffers{bc.pending, b}
	_, err := bufs.WriteTo(bc.dst)
	bc.pending = bc.pending[:0]
	if err != nil {
		return dstErr(err)
	}
	return nil
}

func (bc *bodyCopy) flush() error {
	if len(bc.pending) == 0 {
		return nil
	}
	bc.armWrite()
	_, err := bc.dst.Write(bc.pending)
	bc.pending = bc.pending[:0]
	if err != nil {
		return dstErr(err)
	}
	return nil
}

// direct copies up to limit bytes (limit < 0: until EOF) from the source
// connection to dst without the buffer, in idle-timeout windows: a window
// that moved bytes is followed by another.
func (bc *bodyCopy) direct(limit int64) (n int64, eof bool, err error) {
	for {
		bc.armedR, bc.armedW = time.Time{}, time.Time{}
		bc.armRead()
		bc.armWrite()
		var k int64
		if limit < 0 {
			k, err = io.Copy(bc.dst, bc.src.conn)
			if err == nil {
				return n + k, true, nil
			}
		} else {
			lr := io.LimitedReader{R: bc.src.conn, N: limit - n}
			k, err = io.Copy(bc.dst, &lr)
			if err == nil {
				n += k
				// io.Copy returns nil both at the limit and at EOF.
				return n, n < limit, nil
			}
		}
		n += k
		if k > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		return n, false, &sideError{err: err}
	}
}

// armRead (re)sets the read deadline on the source, and armWrite the write
// deadline on the destination, each at most every idle/4, so each blocking
// step is bounded by about idle without touching timers on every small
// read or write.
func (bc *bodyCopy) armRead() {
	if now, ok := bc.due(&bc.armedR); ok {
		bc.touchedR = true
		_ = bc.src.conn.SetReadDeadline(now.Add(bc.idle))
		// An abort that raced with the deadline above must not be undone.
		bc.stopped()
	}
}

func (bc *bodyCopy) armWrite() {
	if now, ok := bc.due(&bc.armedW); ok {
		bc.touchedW = true
		_ = bc.dst.SetWriteDeadline(now.Add(bc.idle))
		bc.stopped()
	}
}

// due reports whether a deadline armed at *armed needs setting again, and
// if so records now as its new time.
func (bc *bodyCopy) due(armed *time.Time) (time.Time, bool) {
	if bc.stopped() || bc.idle <= 0 {
		return time.Time{}, false
	}
	now := time.Now()
	if !armed.IsZero() && now.Sub(*armed) < bc.idle/4 {
		return now, false
	}
	*armed = now
	return now, true
}

// stopped reports an abort, and makes sure both waits fail at once.
func (bc *bodyCopy) stopped() bool {
	if bc.stop == nil || !bc.stop.Load() {
		return false
	}
	past := time.Unix(1, 0)
	_ = bc.src.conn.SetReadDeadline(past)
	_ = bc.dst.SetWriteDeadline(past)
	bc.touchedR, bc.touchedW = true, true
	return true
}

// disarm clears the deadlines armRead and armWrite set, so that later users
// of either connection (a kept-alive request, a relayed upgrade, an idle
// pool) start without them.
func (bc *bodyCopy) disarm() {
	if bc.touchedR {
		_ = bc.src.conn.SetReadDeadline(time.Time{})
		bc.touchedR = false
	}
	if bc.touchedW {
		_ = bc.dst.SetWriteDeadline(time.Time{})
		bc.touchedW = false
	}
}
