//go:build linux

package relay

import (
	"io"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// maxSplice is the most one splice(2) asks to move, and the capacity asked
// for pooled pipes (the default /proc/sys/fs/pipe-max-size), as package
// net's own splice does.
const maxSplice = 1 << 20

const spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK

// burst splices from src to dst until src would block with the pipe
// drained (more data later: eof false, nil error), src's EOF (eof true) or
// an error. Without a pipe (the process is out of descriptors) it moves
// nothing and move goes on with read and write.
func (m *tcpMover) burst() (moved int64, eof bool, err error) {
	pp := getPipe()
	if pp == nil {
		return 0, false, nil
	}
	m.pipe = pp
	if m.spliceInFn == nil {
		m.spliceInFn, m.spliceOutFn = m.spliceIn, m.spliceOut
	}
	defer func() {
		m.pipe = nil
		pp.release()
	}()
	for {
		if err := m.rc.Read(m.spliceInFn); err != nil {
			return moved, false, err
		}
		switch {
		case m.errno == unix.EAGAIN:
			return moved, false, nil
		case m.errno != nil:
			return moved, false, opError("splice", m.src, m.errno)
		case m.n == 0:
			return moved, true, nil
		}
		m.p.touch()
		pp.data += m.n
		n, err := m.pump()
		moved += n
		if err != nil {
			return moved, false, err
		}
	}
}

// pump moves everything in the pipe to dst, waiting for it to be writable
// as needed.
func (m *tcpMover) pump() (int64, error) {
	var moved int64
	for m.pipe.data > 0 {
		m.want = m.pipe.data
		if err := m.wc.Write(m.spliceOutFn); err != nil {
			return moved, err
		}
		if m.errno != nil {
			return moved, opError("splice", m.dst, m.errno)
		}
		if m.n == 0 {
			return moved, opError("splice", m.dst, io.ErrNoProgress)
		}
		m.pipe.data -= m.n
		moved += int64(m.n)
	}
	return moved, nil
}

// spliceIn is src's RawConn.Read callback during a burst. It never asks to
// wait: the pipe is empty, so EAGAIN means the socket is drained and the
// burst ends.
func (m *tcpMover) spliceIn(fd uintptr) bool {
	for {
		n, err := unix.Splice(int(fd), nil, m.pipe.w, nil, maxSplice, spliceFlags)
		if err == unix.EINTR {
			continue
		}
		m.n, m.errno = int(n), err
		return true
	}
}

// spliceOut is dst's RawConn.Write callback; EAGAIN waits until the socket
// is writable.
func (m *tcpMover) spliceOut(fd uintptr) bool {
	for {
		n, err := unix.Splice(m.pipe.r, nil, int(fd), nil, m.want, spliceFlags)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		m.n, m.errno = int(n), err
		return true
	}
}

// kernelPipe is a pipe(2) pair used as splice's buffer.
type kernelPipe struct {
	r, w    int
	data    int // bytes in the pipe
	cleanup runtime.Cleanup
}

// pipePool holds drained pipes. The pool drops idle entries at garbage
// collection; a cleanup closes their descriptors.
var pipePool = sync.Pool{New: newPipe}

func newPipe() any {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil
	}
	// A smaller pipe (the size refused) still works, in more calls.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, maxSplice)
	pp := &kernelPipe{r: fds[0], w: fds[1]}
	pp.cleanup = runtime.AddCleanup(pp, closePipe, fds)
	return pp
}

// getPipe returns a pooled or new pipe, or nil when none can be made.
func getPipe() *kernelPipe {
	pp, _ := pipePool.Get().(*kernelPipe)
	return pp
}

// release pools a drained pipe and closes one still holding bytes.
func (pp *kernelPipe) release() {
	if pp.data == 0 {
		pipePool.Put(pp)
		return
	}
	pp.cleanup.Stop()
	closePipe([2]int{pp.r, pp.w})
}

func closePipe(fds [2]int) {
	_ = unix.Close(fds[0])
	_ = unix.Close(fds[1])
}
