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

// splicer is a tcpMover's state for bursts.
type splicer struct {
	pipe *kernelPipe
	want int // bytes spliceOut may move
	// lowat is set while src's SO_RCVLOWAT is raised (see raiseLowat).
	lowat bool
	// The callbacks bound once, so bursts allocate nothing.
	spliceInFn, spliceOutFn   func(fd uintptr) bool
	raiseLowatFn, dropLowatFn func(fd uintptr)
}

// burst splices from src to dst until src would block with the pipe
// drained (more data later: eof false, nil error), src's EOF (eof true) or
// an error. Without a pipe (the process is out of descriptors) it moves
// nothing and move goes on with read and write.
func (m *tcpMover) burst() (moved int64, eof bool, err error) {
	pp := getPipe()
	if pp == nil {
		return 0, false, nil
	}
	if m.sp == nil {
		m.sp = &splicer{}
		m.sp.spliceInFn, m.sp.spliceOutFn = m.spliceIn, m.spliceOut
		m.sp.raiseLowatFn, m.sp.dropLowatFn = m.raiseLowat, m.dropLowat
	}
	sp := m.sp
	sp.pipe = pp
	defer func() {
		sp.pipe = nil
		pp.release()
		// Before src is waited on again: a mark left raised would keep
		// a short tail from waking this direction.
		if sp.lowat {
			_ = m.rc.Control(sp.dropLowatFn)
		}
	}()
	for {
		if err := m.rc.Read(sp.spliceInFn); err != nil {
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
	sp := m.sp
	for sp.pipe.data > 0 {
		sp.want = sp.pipe.data
		if err := m.wc.Write(sp.spliceOutFn); err != nil {
			return moved, err
		}
		if m.errno != nil {
			return moved, opError("splice", m.dst, m.errno)
		}
		if m.n == 0 {
			return moved, opError("splice", m.dst, io.ErrNoProgress)
		}
		sp.pipe.data -= m.n
		moved += int64(m.n)
	}
	return moved, nil
}

// spliceIn is src's RawConn.Read callback during a burst. It never asks to
// wait: the pipe is empty, so EAGAIN means the socket is drained and the
// burst ends.
func (m *tcpMover) spliceIn(fd uintptr) bool {
	for {
		n, err := splice(int(fd), m.sp.pipe.w, maxSplice)
		if err == unix.EINTR {
			continue
		}
		m.n, m.errno = n, err
		return true
	}
}

// spliceOut is dst's RawConn.Write callback; EAGAIN waits until the socket
// is writable, with src's low-water mark raised meanwhile.
func (m *tcpMover) spliceOut(fd uintptr) bool {
	for {
		n, err := splice(m.sp.pipe.r, int(fd), m.sp.want)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			_ = m.rc.Control(m.sp.raiseLowatFn)
			return false
		}
		m.n, m.errno = n, err
		return true
	}
}

// raiseLowat is src's RawConn.Control callback for when the pump must wait
// for dst. Until the pump is done nobody reads src, yet every segment that
// lands there would wake the runtime's poller thread for nothing, a thread
// switch each. A receive low-water mark of a quarter of src's buffer keeps
// those wake-ups off (the kernel still signals once the window is nearly
// full). A quarter stays below the window the kernel offers for that
// buffer unless segments are mostly overhead, so setting it does not make
// the kernel enlarge the buffer, as a mark above the window would.
// splice(2) ignores the mark: the burst reads src as before. The buffer
// grows while a transfer runs, so the mark follows it at each wait.
func (m *tcpMover) raiseLowat(fd uintptr) {
	rcvbuf, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil || rcvbuf/4 <= 1 {
		return
	}
	if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, rcvbuf/4) == nil {
		m.sp.lowat = true
	}
}

// dropLowat is src's RawConn.Control callback that puts the low-water mark
// back to the default, one byte. Setting it also signals src if bytes are
// already waiting there.
func (m *tcpMover) dropLowat(fd uintptr) {
	m.sp.lowat = false
	_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
}

// splice moves up to n bytes from in to out without waiting. It is a raw
// system call: both ends are non-blocking, so it does not sleep, and
// skipping the scheduler's system call hooks keeps the thread's P through
// a call that may move a megabyte, rather than having sysmon hand the P to
// another thread (waking it) mid-call and the caller take one back after.
func splice(in, out, n int) (int, error) {
	r, _, errno := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), spliceFlags)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
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
