package tunnel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/relay"
)

const connectEstablished = "HTTP/1.1 200 Connection established\r\n\r\n"

// serveConnect serves an HTTP CONNECT request (RFC 9110 §9.3.6): it dials
// the target, answers 200, writes on any bytes the client sent after its
// head, and hands the raw connections to the relay until both sides are
// done.
func (c *conn) serveConnect() {
	e := c.newEntry(dial.ProtocolHTTPConnect)
	target, err := parseAuthority(c.req.target)
	if err != nil {
		c.fail(&e, err)
		return
	}
	e.target = target
	id, err := c.identify(&c.req)
	e.user = id.user
	if err != nil {
		c.fail(&e, err)
		return
	}
	if c.intercept(&e, target, id) {
		return
	}
	out, err := c.dial(&dial.Request{
		Target:   target,
		Protocol: dial.ProtocolHTTPConnect,
		Client:   c.rwc.RemoteAddr(),
		User:     id.user,
		Session:  id.session,
		Country:  id.country,
	})
	if err != nil {
		e.noteDialErr(err)
		c.fail(&e, err)
		return
	}
	e.noteOutbound(out, time.Now())
	if !c.track(out.Conn) {
		e.result = resultShutdown
		c.logAccess(&e)
		out.Done(false)
		return
	}
	if err := c.startRelay(&e, out); err != nil {
		c.logAccess(&e)
		c.untrack()
		out.Done(false)
	}
}

// startRelay answers 200, writes on any bytes the client sent after its
// head and hands the tunnel to relay.Start, which ends it (log line,
// outbound, connection) when both sides are done. On error nothing was
// handed over and e holds the outcome.
func (c *conn) startRelay(e *accessEntry, out *dial.Outbound) error {
	if _, err := c.rwc.Write(c.srv.established); err != nil {
		e.result, e.err = resultClientClosed, err
		return err
	}
	e.status = 200
	if early := c.in.buffered(); len(early) > 0 {
		n, err := out.Conn.Write(early)
		e.up += int64(n)
		if err != nil {
			e.result, e.err = resultInterrupted, err
			return err
		}
	}
	c.dropRequestState()
	// Nothing watches c.ctx past the dial (Shutdown closes both conns):
	// cancelling it now drops what the dial left on it for the tunnel's life.
	c.cancel()

	// The goroutine that served the handshake ends here; relay.Start's
	// own (small) goroutines carry the tunnel and finish the connection.
	c.handedOff = true
	relay.Start(c.rwc, out.Conn, c.srv.cfg.IdleTimeout, func(res relay.Result, err error) {
		e.up += res.Up
		e.down += res.Down
		e.result, e.err = relayResult(res, err), err
		if c.wasForced() {
			e.result = resultShutdown
		}
		c.logAccess(e)
		c.untrack()
		out.Done(false)
		c.finish()
	})
	return nil
}

func relayResult(res relay.Result, err error) string {
	switch {
	case res.Idle:
		return resultIdle
	case err != nil:
		return resultInterrupted
	}
	return resultOK
}

// dial asks the Dialer for req under ConnectTimeout. A dialer that gave up
// because that deadline passed is reported as a timeout even if its error
// does not say so.
func (c *conn) dial(req *dial.Request) (*dial.Outbound, error) {
	ctx := c.dialContext(time.Now())
	out, err := c.srv.cfg.Dialer.Dial(ctx, req)
	if err == nil && (out == nil || out.Conn == nil) {
		err = fmt.Errorf("%w: dialer returned no connection", dial.ErrUpstream)
	}
	if err != nil {
		if deadlinePassed(ctx) && dial.Classify(err) != dial.KindTimeout {
			err = fmt.Errorf("%w: %w", dial.ErrTimeout, err)
		}
		return nil, err
	}
	return out, nil
}

// dialShareFraction: dials that start within ConnectTimeout/dialShareFraction
// of each other on one connection share a context (see dialContext).
const dialShareFraction = 100

// dialContext returns a context with the deadline ConnectTimeout after
// about now, for one dial. The dials of a kept-alive connection's requests
// that follow each other closely share one, each left at least 99% of the
// budget: a context and its timer per request cost more than the rest of
// forwarding a small request outside the kernel. releaseBuffers releases it.
func (c *conn) dialContext(now time.Time) context.Context {
	budget := c.srv.cfg.ConnectTimeout
	if c.dctx != nil && now.Sub(c.dctxAt) <= budget/dialShareFraction && !now.Before(c.dctxAt) {
		return c.dctx
	}
	if c.dcancel != nil {
		c.dcancel()
	}
	c.dctx, c.dcancel = context.WithDeadline(c.ctx, now.Add(budget))
	c.dctxAt = now
	return c.dctx
}

// isTimeout reports a deadline passing on a connection.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
