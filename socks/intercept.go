package socks

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"

	"github.com/hopper-proxy/hopper/dial"
)

// Interceptor is an optional stage that takes SOCKS streams over instead of
// splicing them (hopper's TLS interception). The server asks it about every
// CONNECT after the handshake; for a stream it takes, the client gets a
// success reply without a dial and the stream goes to ServeIntercepted.
type Interceptor interface {
	// Intercept reports whether the stream req describes (Protocol
	// ProtocolSOCKS5 or ProtocolSOCKS4, Target, the client's controls) is
	// to be handed to ServeIntercepted. It must not block.
	Intercept(req *dial.Request) bool
	// ServeIntercepted serves the stream after the success reply. conn is
	// the raw client connection (the listener closes it afterwards), early
	// the bytes the client sent past its request. It dials whatever it
	// needs itself. Cancelling ctx ends the stream. up and down count the
	// bytes read from and written to conn; err is nil when the stream ended
	// normally.
	ServeIntercepted(ctx context.Context, conn net.Conn, early []byte, req *dial.Request) (up, down int64, err error)
}

// intercept hands the stream to the Interceptor when it takes it, and
// reports whether it did.
func (s *Server) intercept(st *stream, br *bufio.Reader, reply replyFunc) bool {
	ic := s.cfg.Interceptor
	if ic == nil || !ic.Intercept(&st.req) {
		return false
	}
	if err := reply(nil, nil); err != nil {
		st.fail(resultClientClosed, fmt.Errorf("write reply: %w", err))
		return true
	}
	var early []byte
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		early = bytes.Clone(b)
	}
	up, down, err := ic.ServeIntercepted(st.ctx, st.conn, early, &st.req)
	st.res.Up += up
	st.res.Down += down
	if st.ctx.Err() != nil {
		st.fail(resultCanceled, context.Cause(st.ctx))
		return true
	}
	st.fail(resultOK, err)
	return true
}
