package socks

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/relay"
)

// Protocol versions, the first byte of a SOCKS stream.
const (
	socks4Version = 0x04
	socks5Version = 0x05
)

// Results in the access log beyond "ok" and the dial.Kind strings.
const (
	resultOK            = "ok"
	resultIdle          = "idle"
	resultBadRequest    = "bad-request"
	resultUnsupported   = "unsupported"
	resultAuthFailed    = "auth-failed"
	resultClientClosed  = "client-closed"
	resultClientTimeout = "client-timeout"
	resultCanceled      = "canceled"
)

// Handshake failures the client caused; replyCode5 and replyCode4 render them.
var (
	errBadRequest  = errors.New("malformed request")
	errUnsupported = errors.New("command not supported")
	errNoPassword  = errors.New("SOCKS4 cannot authenticate: no password")
)

// aLongTimeAgo is a deadline in the past, set to unblock a handshake.
var aLongTimeAgo = time.Unix(1, 0)

// ServeStream serves a connection whose first byte the listener already read:
// 0x05 for SOCKS5, 0x04 for SOCKS4 or SOCKS4a; for anything else it ends the
// stream at once. The listener leaves its header deadline set on conn;
// ServeStream clears it once the handshake is done. ServeStream never closes
// conn (relaying half-closes it when the target ends its side): it calls
// done once it has finished with conn, and the listener closes it then. An
// established tunnel is relayed on goroutines of its own, so ServeStream
// returns after the handshake and done comes when the tunnel ends.
//
// ctx bounds the whole stream: cancelling it aborts the handshake (through a
// deadline on conn), the dial, and an established tunnel. The dial is further
// bounded by Config.ConnectTimeout and the tunnel by Config.IdleTimeout.
//
// A conn that is a *tls.Conn is a client that reached the listener over TLS
// (an HTTPS proxy port; tunnel hands over its *tls.Conn, never another
// wrapper): its access-log line says "tls": true, as the listener's own
// lines do.
func (s *Server) ServeStream(ctx context.Context, conn net.Conn, first byte, done func()) {
	st := &stream{ctx: ctx, conn: conn, start: time.Now(), done: done}
	_, st.tls = conn.(*tls.Conn)
	st.req.Client = conn.RemoteAddr()
	st.unwatch = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	s.opened(first)
	switch first {
	case socks5Version:
		st.req.Protocol = dial.ProtocolSOCKS5
		s.serveSOCKS5(st)
	case socks4Version:
		st.req.Protocol = dial.ProtocolSOCKS4
		s.serveSOCKS4(st)
	default:
		st.fail(resultBadRequest, fmt.Errorf("%w: version %#x", errBadRequest, first))
	}
	if st.relaying {
		return // the relay ends the stream; st is no longer ours
	}
	s.end(st)
}

// end finishes the stream: observer, access log, and the listener's done.
func (s *Server) end(st *stream) {
	st.unwatch()
	s.observe(st)
	s.logAccess(st)
	st.done()
}

// stream is the state of one ServeStream call, shared by the handshake code of
// both protocols and the access log.
type stream struct {
	ctx context.Context
	// conn is the client connection as the listener handed it: the raw
	// accepted conn, or the *tls.Conn of a client that came in over TLS.
	conn    net.Conn
	tls     bool // conn is a *tls.Conn
	start   time.Time
	unwatch func() bool // stops the ctx watch on the handshake
	done    func()      // the listener's: called once the stream has ended
	// relaying is set once the tunnel is handed to relay.Start: from then
	// on only the relay's goroutines use the stream.
	relaying bool

	req    dial.Request
	out    *dial.Outbound
	res    relay.Result
	result string
	err    error
	ready  time.Duration // start → outbound ready, 0 if never
}

// fail records the outcome unless one is already recorded.
func (st *stream) fail(result string, err error) {
	if st.result == "" {
		st.result, st.err = result, err
	}
}

// endHandshake clears the listener's header deadline; it fails when ctx was
// cancelled meanwhile.
func (st *stream) endHandshake() error {
	if !st.unwatch() {
		return fmt.Errorf("handshake: %w", context.Cause(st.ctx))
	}
	return st.conn.SetDeadline(time.Time{})
}

// handshakeResult names the outcome of a handshake that failed with err, given
// the first error reading from the client (nil if none).
func (st *stream) handshakeResult(readErr error) string {
	switch {
	case st.ctx.Err() != nil:
		return resultCanceled
	case readErr == nil:
		return resultBadRequest
	case errors.Is(readErr, os.ErrDeadlineExceeded):
		return resultClientTimeout
	case errors.Is(readErr, io.EOF), errors.Is(readErr, io.ErrUnexpectedEOF),
		errors.Is(readErr, syscall.ECONNRESET), errors.Is(readErr, net.ErrClosed):
		return resultClientClosed
	default:
		return resultBadRequest
	}
}

// replyFunc answers the client: err nil means success, bound is then the
// outbound connection's local address.
type replyFunc func(err error, bound net.Addr) error

// connect dials st.req, answers the client with reply and, on success, hands
// the tunnel to the relay (st.relaying), which ends the stream. Bytes the
// handshake reader already buffered past the request go to the target first.
func (s *Server) connect(st *stream, br *bufio.Reader, reply replyFunc) {
	if err := st.endHandshake(); err != nil {
		st.fail(resultCanceled, err)
		return
	}
	if s.intercept(st, br, reply) {
		return
	}
	dctx, cancel := context.WithTimeout(st.ctx, s.cfg.ConnectTimeout)
	out, err := s.cfg.Dialer.Dial(dctx, &st.req)
	// A dialer that gave up because the connect deadline passed timed out
	// (0x04), whatever its error says; its conn deadline may fire a moment
	// before dctx's own timer.
	if dl, _ := dctx.Deadline(); err != nil && !time.Now().Before(dl) && dial.Classify(err) != dial.KindTimeout {
		err = fmt.Errorf("%w: %w", dial.ErrTimeout, err)
	}
	cancel()
	if err != nil {
		if st.ctx.Err() != nil {
			st.fail(resultCanceled, err)
		} else {
			st.fail(dial.Classify(err).String(), err)
		}
		_ = reply(err, nil)
		return
	}
	st.out, st.ready = out, time.Since(st.start)
	if err := reply(nil, out.Conn.LocalAddr()); err != nil {
		st.fail(resultClientClosed, fmt.Errorf("write reply: %w", err))
		out.Done(false)
		return
	}
	if n := br.Buffered(); n > 0 {
		early, _ := br.Peek(n)
		w, err := out.Conn.Write(early)
		st.res.Up += int64(w)
		if err != nil {
			st.fail(dial.KindFailed.String(), fmt.Errorf("write early data: %w", err))
			out.Done(false)
			return
		}
	}
	// The handshake's goroutine (deep in go-socks5, with its buffered
	// reader) lets go here; relay.Start's goroutines end the stream.
	st.relaying = true
	stop := context.AfterFunc(st.ctx, func() { _ = out.Conn.Close() })
	relay.Start(st.conn, out.Conn, s.cfg.IdleTimeout, func(res relay.Result, err error) {
		canceled := !stop()
		st.res.Up += res.Up
		st.res.Down += res.Down
		st.res.Idle = res.Idle
		switch {
		case canceled:
			st.fail(resultCanceled, context.Cause(st.ctx))
		case res.Idle:
			st.fail(resultIdle, err)
		default:
			st.fail(resultOK, err)
		}
		out.Done(false)
		s.end(st)
	})
}

// logAccess writes the stream's one access-log line, with "tls": true when
// the client came in over TLS (the listener's lines carry the same field).
func (s *Server) logAccess(st *stream) {
	ce := s.log.Check(zap.InfoLevel, "tunnel")
	if ce == nil {
		return
	}
	upstream, attempts := "", 0
	var de *dial.Error
	switch {
	case st.out != nil:
		upstream, attempts = st.out.Upstream, len(st.out.Attempts)
	case errors.As(st.err, &de):
		upstream, attempts = de.Upstream, de.Attempt
	}
	client := ""
	if st.req.Client != nil {
		client = st.req.Client.String()
	}
	fields := make([]zap.Field, 0, 12)
	fields = append(fields,
		zap.String("client", client),
		zap.String("user", st.req.User),
		zap.String("proto", st.req.Protocol.String()),
		zap.String("target", st.req.Target),
		zap.String("upstream", upstream),
		zap.Int("attempts", attempts),
		zap.Int64("up", st.res.Up),
		zap.Int64("down", st.res.Down),
		zap.Duration("duration", time.Since(st.start)),
		zap.String("result", st.result),
	)
	if st.tls {
		fields = append(fields, zap.Bool("tls", true))
	}
	if st.err != nil {
		fields = append(fields, zap.Error(st.err))
	}
	ce.Write(fields...)
}

// validHost reports whether a host name from a request may be handed to the
// Dialer: an IP literal, or 1 to 253 bytes of letters, digits, '-', '_' and
// '.' (what DNS names and /etc/hosts entries use; clients send IDNs as
// punycode). Anything else, an empty name above all, is a malformed request.
func validHost(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
