package admin

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
)

// ErrNotServing is wrapped by ServingListener.Serving while the listener does
// not accept connections.
var ErrNotServing = errors.New("not accepting connections")

// ServingListener wraps the proxy's listener so that /healthz can tell
// whether it is being served: from the first Accept call until it is closed
// or Accept fails for good. Accept returns the wrapped listener's
// connections unchanged (raw *net.TCPConn for TCP), so the relay keeps its
// splice path.
type ServingListener struct {
	net.Listener
	state atomic.Int32
	err   atomic.Pointer[error] // why it stopped
}

const (
	listenerIdle int32 = iota
	listenerServing
	listenerStopped
)

// WatchListener wraps ln; serve the result instead of ln.
func WatchListener(ln net.Listener) *ServingListener {
	return &ServingListener{Listener: ln}
}

// Accept marks the listener as served and accepts the next connection. A
// temporary error leaves it served; any other marks it stopped.
func (l *ServingListener) Accept() (net.Conn, error) {
	l.state.CompareAndSwap(listenerIdle, listenerServing)
	c, err := l.Listener.Accept()
	if err != nil {
		var ne net.Error
		if !(errors.As(err, &ne) && ne.Timeout()) && !isTemporary(err) {
			l.stop(err)
		}
		return nil, err
	}
	return c, nil
}

// Close marks the listener as stopped and closes it.
func (l *ServingListener) Close() error {
	l.stop(net.ErrClosed)
	return l.Listener.Close()
}

func (l *ServingListener) stop(err error) {
	l.err.CompareAndSwap(nil, &err)
	l.state.Store(listenerStopped)
}

// Serving returns nil while the listener is being served, else an error
// wrapping ErrNotServing that says why.
func (l *ServingListener) Serving() error {
	switch l.state.Load() {
	case listenerServing:
		return nil
	case listenerIdle:
		return fmt.Errorf("%w on %s: not served yet", ErrNotServing, l.Addr())
	}
	reason := net.ErrClosed
	if p := l.err.Load(); p != nil {
		reason = *p
	}
	return fmt.Errorf("%w on %s: %w", ErrNotServing, l.Addr(), reason)
}

// isTemporary reports accept errors a server backs off from and retries
// (ECONNABORTED, EMFILE and the like).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
