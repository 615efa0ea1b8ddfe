package tunnel

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/relay"
)

// maxReuseRetries bounds how often a request is sent again after failing,
// before any response byte, on a connection the dialer kept idle: each such
// connection may have been closed by the origin meanwhile, and the next one
// the dialer hands out may be another idle one.
const maxReuseRetries = 3

var (
	errUnexpected101 = fmt.Errorf("%w: 101 Switching Protocols without a WebSocket upgrade", errBadResponse)
)

// serveForward serves one absolute-URI request (RFC 9112 §3.2.2) by sending
// it on in origin-form and streaming the response back. It reports whether
// the client connection may carry another request.
func (c *conn) serveForward() bool {
	e := c.newEntry(dial.ProtocolHTTPForward)
	h := &c.req
	info, err := analyzeRequest(h)
	if err != nil {
		c.fail(&e, err)
		return false
	}
	u, err := parseAbsoluteURI(h.target)
	if err != nil {
		c.fail(&e, err)
		return false
	}
	e.target = u.target
	id, err := c.identify(h)
	e.user = id.user
	if err != nil {
		c.fail(&e, err)
		return false
	}
	req := dial.Request{
		Target:   u.target,
		Protocol: dial.ProtocolHTTPForward,
		Client:   c.rwc.RemoteAddr(),
		User:     id.user,
		Session:  id.session,
		Country:  id.country,
		Forward:  true,
		ConnID:   c.id,
		Seq:      c.seq,
	}
	c.seq++
	for retries := 0; ; retries++ {
		out, err := c.dial(&req)
		if err != nil {
			e.noteDialErr(err)
			c.fail(&e, err)
			return false
		}
		e.noteOutbound(out)
		x := exchange{c: c, out: out, info: &info, u: &u, e: &e}
		keep, retry := x.run()
		if retry && retries < maxReuseRetries {
			continue
		}
		if retry {
			c.fail(&e, x.retryErr)
			return false
		}
		return keep
	}
}

// exchange is one request/response over one outbound connection.
type exchange struct {
	c    *conn
	out  *dial.Outbound
	info *reqInfo
	u    *absURI
	e    *accessEntry
	job  *bodyJob
	// retryErr is the failure that made run ask for a retry.
	retryErr error
}

// bodyJob streams a request body to the origin while the response is read,
// so that Expect: 100-continue and early responses work.
type bodyJob struct {
	bc      bodyCopy
	readAll atomic.Bool
	// clientFailed: reading the body from the client failed.
	clientFailed atomic.Bool
	// stop aborts the copy (see bodyCopy.stop).
	stop atomic.Bool
	done chan struct{}
	err  error
	// Set by settleBody, after done.
	settled, aborted bool
}

func (j *bodyJob) run(onClientErr func()) {
	defer close(j.done)
	j.err = j.bc.run()
	j.bc.disarm()
	if j.err != nil && isSrcErr(j.err) {
		// Stored before onClientErr wakes the response reader, which then
		// sees it and stops waiting.
		j.clientFailed.Store(true)
		onClientErr()
	}
}

func (j *bodyJob) finished() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// run performs the exchange. keep reports that the client connection may
// carry another request; retry that nothing reached the client or the origin
// and the request may be sent again on a fresh connection.
func (x *exchange) run() (keep, retry bool) {
	c, out, e := x.c, x.out, x.e
	idle := c.srv.cfg.IdleTimeout
	if !c.track(out.Conn) {
		out.Done(false)
		e.result = resultShutdown
		c.logAccess(e)
		return false, false
	}
	c.up.conn = out.Conn
	c.up.r, c.up.w, c.up.scan, c.up.total = 0, 0, 0, 0
	if c.up.buf == nil {
		c.attachBuf(&c.up)
	}
	c.wbuf = appendRequestHead(c.wbuf[:0], &c.req, x.u, x.info, out.Proxy, out.ProxyAuthorization)
	e.up += int64(len(c.wbuf))

	_ = out.Conn.SetReadDeadline(time.Now().Add(idle))
	if x.info.body.kind == bodyNone {
		_ = out.Conn.SetWriteDeadline(time.Now().Add(idle))
		if _, err := out.Conn.Write(c.wbuf); err != nil {
			return x.noResponse(err)
		}
		_ = out.Conn.SetWriteDeadline(time.Time{})
	} else {
		x.job = &bodyJob{done: make(chan struct{})}
		x.job.bc = bodyCopy{dst: out.Conn, src: &c.in, fr: x.info.body, idle: idle, prefix: c.wbuf,
			readAll: &x.job.readAll, stop: &x.job.stop}
		// A client that goes away mid-body unblocks the wait for a response.
		go x.job.run(func() { _ = out.Conn.SetReadDeadline(time.Unix(1, 0)) })
	}

	headReq := string(c.req.method) == "HEAD"
	for {
		b, err := c.up.readHead(c.srv.cfg.MaxHeadBytes)
		if err != nil {
			if isTimeout(err) && x.job != nil && !x.job.finished() && !x.job.clientFailed.Load() {
				// The body is still streaming (slowly): keep waiting.
				_ = out.Conn.SetReadDeadline(time.Now().Add(idle))
				continue
			}
			return x.noResponse(err)
		}
		err = c.resp.parseResponse(b)
		c.up.consume(len(b))
		if err != nil {
			return x.noResponse(err)
		}
		if c.resp.status == 101 {
			return x.upgrade(), false
		}
		if c.resp.status >= 200 {
			break
		}
		// Interim response (100 Continue, 103 Early Hints): pass it on to
		// HTTP/1.1 clients (RFC 9110 §15.2) and wait for the final one.
		if c.req.minor >= 1 {
			c.rbuf = appendResponseHead(c.rbuf[:0], &c.resp, false, false)
			n, err := c.rwc.Write(c.rbuf)
			e.down += int64(n)
			if err != nil {
				return x.finish(resultClientClosed, err, false)
			}
		}
	}

	ri, err := analyzeResponse(&c.resp, headReq)
	if err != nil {
		return x.noResponse(err)
	}
	e.status = c.resp.status
	bodyRead := x.job == nil || x.job.readAll.Load()
	clientClose := x.info.close || ri.body.kind == bodyClose || !bodyRead || c.srv.isShutting()
	c.rbuf = appendResponseHead(c.rbuf[:0], &c.resp, false, clientClose && c.req.minor >= 1)
	e.down += int64(len(c.rbuf))
	bc := bodyCopy{dst: c.rwc, src: &c.up, fr: ri.body, idle: idle, prefix: c.rbuf}
	err = bc.run()
	bc.disarm()
	e.down += bc.n
	if err != nil {
		result := resultInterrupted
		var se *sideError
		if errors.As(err, &se) && se.src {
			result = dial.KindFailed.String()
		}
		return x.finish(result, err, false)
	}
	reusable := !ri.close && c.req.minor >= 1 && len(c.up.buffered()) == 0
	keep, _ = x.finish(resultOK, nil, reusable)
	return keep && !clientClose, false
}

// noResponse handles a failure before the final response head arrived: a
// retry on a fresh connection when that is safe, else an error reply.
func (x *exchange) noResponse(err error) (keep, retry bool) {
	c, out := x.c, x.out
	if x.job == nil && out.Reused && c.up.total == 0 && !errors.Is(err, errBadResponse) {
		c.untrack()
		out.Done(false)
		x.retryErr = fmt.Errorf("%w: %w", errNoResponse, err)
		return false, true
	}
	if x.job != nil {
		x.settleBody()
		if x.job.err != nil && isSrcErr(x.job.err) && !x.job.aborted {
			return x.finish(resultClientClosed, x.job.err, false)
		}
	}
	c.untrack()
	out.Done(false)
	if isTimeout(err) {
		err = fmt.Errorf("%w: waiting for the response: %w", dial.ErrTimeout, err)
	} else {
		err = fmt.Errorf("%w: %w", errNoResponse, err)
	}
	c.fail(x.e, err)
	return false, false
}

// settleBody ends a request body stream once the response is complete or
// failed: it waits for a body that was read whole to finish its last write,
// stops one still streaming, and counts what was sent. It is idempotent.
func (x *exchange) settleBody() {
	j := x.job
	if j == nil || j.settled {
		return
	}
	j.settled = true
	switch {
	case j.finished():
	case j.clientFailed.Load():
		<-j.done // already on its way out
	case j.readAll.Load():
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-j.done:
		case <-t.C:
		}
		t.Stop()
	}
	if !j.finished() {
		j.aborted = true
		j.stop.Store(true)
		past := time.Unix(1, 0)
		_ = x.c.rwc.SetReadDeadline(past)
		_ = x.out.Conn.SetWriteDeadline(past)
		<-j.done
		_ = x.c.rwc.SetReadDeadline(time.Time{})
		_ = x.out.Conn.SetWriteDeadline(time.Time{})
	}
	x.e.up += j.bc.n
}

// finish ends the exchange: it settles the request body, gives the outbound
// back (reusable only if everything ended cleanly), and logs the request.
func (x *exchange) finish(result string, err error, reusable bool) (keep, retry bool) {
	c, out, e := x.c, x.out, x.e
	if j := x.job; j != nil {
		x.settleBody()
		switch {
		case j.aborted:
			// The body was abandoned: the origin may still expect it.
			reusable = false
		case j.err != nil:
			reusable = false
			if err == nil && isSrcErr(j.err) {
				result, err = resultClientClosed, j.err
			}
		}
	}
	_ = out.Conn.SetReadDeadline(time.Time{})
	reusable = c.untrack() && reusable
	out.Done(reusable)
	if c.wasForced() {
		result = resultShutdown
	}
	e.result, e.err = result, err
	c.logAccess(e)
	return result == resultOK, false
}

// upgrade completes a WebSocket handshake the origin accepted with 101 and
// relays both ways until the tunnel ends. The client connection ends with it.
func (x *exchange) upgrade() bool {
	c, out, e := x.c, x.out, x.e
	e.status = 101
	ri, err := analyzeResponse(&c.resp, false)
	if err != nil || !x.info.websocket || !ri.websocket {
		if err == nil {
			err = errUnexpected101
		}
		x.noResponse(err)
		return false
	}
	c.rbuf = appendResponseHead(c.rbuf[:0], &c.resp, true, false)
	c.rbuf = append(c.rbuf, c.up.buffered()...)
	_ = out.Conn.SetDeadline(time.Time{})
	_ = c.rwc.SetDeadline(time.Time{})
	n, err := c.rwc.Write(c.rbuf)
	e.down += int64(n)
	if err != nil {
		x.finish(resultClientClosed, err, false)
		return false
	}
	if early := c.in.buffered(); len(early) > 0 {
		n, err := out.Conn.Write(early)
		e.up += int64(n)
		if err != nil {
			x.finish(resultInterrupted, err, false)
			return false
		}
	}
	c.releaseBuffers()
	res, err := relay.Pipe(c.rwc, out.Conn, c.srv.cfg.IdleTimeout)
	e.up += res.Up
	e.down += res.Down
	x.finish(relayResult(res, err), err, false)
	return false
}
