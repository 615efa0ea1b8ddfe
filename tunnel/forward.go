package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/relay"
)

// maxReuseRetries bounds how often a request is sent again after failing,
// before any response byte, on a connection the dialer kept idle: each such
// connection may have been closed by the origin meanwhile, and the next one
// the dialer hands out may be another idle one.
const maxReuseRetries = 3

// maxStallRetries bounds how often a request whose response head did not
// come within ResponseHeaderTimeout is sent again through the Dialer. Only
// bodiless requests of safe methods are, and only when the client has
// received nothing: the origin may have acted on the first copy.
const maxStallRetries = 1

// reportTimeout bounds telling Config.Failures of a stalled upstream, which
// may write to state shared with other instances.
const reportTimeout = time.Second

// keepBufMax is the largest scratch buffer a connection keeps between
// requests; larger ones are left to the garbage collector.
const keepBufMax = 8 << 10

var (
	errUnexpected101 = fmt.Errorf("%w: 101 Switching Protocols without a WebSocket upgrade", errBadResponse)
)

// stallError is a response head that did not come within
// ResponseHeaderTimeout: a timeout (504) with no response.
type stallError struct {
	after time.Duration
	err   error
}

func (e *stallError) Error() string {
	return "no response head within " + e.after.String() + " (response header timeout): " + e.err.Error()
}

func (e *stallError) Unwrap() []error { return []error{dial.ErrTimeout, errNoResponse, e.err} }

// forwardState is the forward request being served. It lives in the
// connection's requestState, so that serving a request allocates none of it.
type forwardState struct {
	e       accessEntry
	info    reqInfo
	u       absURI
	req     dial.Request
	targets targetCache
}

// targetCache remembers the dial target of the last authority parsed: a
// kept-alive client mostly asks the same host again.
type targetCache struct {
	authority []byte
	target    string
}

// hostPort is hostPort(a, "80"), from the cache when a is the last
// authority seen.
func (tc *targetCache) hostPort(a []byte) (string, error) {
	if tc.target != "" && bytes.Equal(a, tc.authority) {
		return tc.target, nil
	}
	t, err := hostPort(a, "80")
	if err == nil {
		tc.authority = append(tc.authority[:0], a...)
		tc.target = t
	}
	return t, err
}

// serveForward serves one absolute-URI request (RFC 9112 §3.2.2) by sending
// it on in origin-form and streaming the response back. It reports whether
// the client connection may carry another request.
func (c *conn) serveForward() bool {
	f := &c.fwd
	f.e = c.newEntry(dial.ProtocolHTTPForward)
	e := &f.e
	h := &c.req
	var err error
	if f.info, err = analyzeRequest(h); err != nil {
		c.fail(e, err)
		return false
	}
	if f.u, err = parseAbsoluteURI(h.target, &f.targets); err != nil {
		c.fail(e, err)
		return false
	}
	e.target = f.u.target
	id, err := c.identify(h)
	e.user = id.user
	if err != nil {
		c.fail(e, err)
		return false
	}
	f.req = dial.Request{
		Target:   f.u.target,
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
	reuses, stalls := 0, 0
	for {
		out, err := c.dial(&f.req)
		if err != nil {
			e.noteDialErr(err)
			c.fail(e, err)
			return false
		}
		now := time.Now()
		e.noteOutbound(out, now)
		x := exchange{c: c, out: out, info: &f.info, u: &f.u, e: e, now: now}
		keep, retry := x.run()
		if !retry {
			return keep
		}
		if x.stalled {
			stalls++
		} else {
			reuses++
		}
		if stalls > maxStallRetries || reuses > maxReuseRetries {
			c.fail(e, x.retryErr)
			return false
		}
		if x.stalled {
			// Through another upstream if the dialer has one: the one that
			// stalled would most likely stall again. Avoid travels in the
			// request, not in the dial context, which dialContext may share
			// with this connection's other dials; the next request starts
			// with a fresh f.req.
			f.req.Avoid = out.Upstream
			c.srv.log.Debug("no response head in time; sending the request again",
				zap.String("client", c.clientAddr()), zap.String("target", e.target),
				zap.String("upstream", out.Upstream), zap.Error(x.retryErr))
		}
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
	// now is when the outbound was handed over; headWait bounds the wait
	// for the response head once the request was sent.
	now      time.Time
	headWait time.Duration
	// retryErr is the failure that made run ask for a retry; stalled says
	// it was a response head that did not come in time.
	retryErr error
	stalled  bool
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

	// mu orders the two goroutines' changes to the outbound's read
	// deadline while the response head is awaited: the job starts the
	// response header timeout when the body is sent (sent, sentAt), unless
	// the head already came (headDone).
	mu       sync.Mutex
	sent     bool
	sentAt   time.Time
	headDone bool
}

// run copies the body to out, then starts the wait of headWait for the
// response head, or, if the client failed, wakes that wait at once.
func (j *bodyJob) run(out net.Conn, headWait time.Duration) {
	defer close(j.done)
	j.err = j.bc.run()
	j.bc.disarm()
	switch {
	case j.err == nil:
		j.mu.Lock()
		j.sent, j.sentAt = true, time.Now()
		if !j.headDone {
			_ = out.SetReadDeadline(j.sentAt.Add(headWait))
		}
		j.mu.Unlock()
	case isSrcErr(j.err):
		// Stored before the deadline wakes the response reader, which then
		// sees it and stops waiting.
		j.clientFailed.Store(true)
		_ = out.SetReadDeadline(time.Unix(1, 0))
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

// waitMore is asked when the wait for the response head timed out. It
// reports whether to go on waiting, with the read deadline on out pushed
// back: by idle while the body still streams, or to the end of the response
// header timeout if the body was sent since the deadline was set.
func (j *bodyJob) waitMore(out net.Conn, idle, headWait time.Duration) bool {
	if j.clientFailed.Load() {
		return false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	now := time.Now()
	switch {
	case j.sent:
		due := j.sentAt.Add(headWait)
		if !now.Before(due) {
			return false
		}
		_ = out.SetReadDeadline(due)
	case j.finished():
		return false
	default:
		_ = out.SetReadDeadline(now.Add(idle))
	}
	return true
}

// sentAll reports that the whole body was sent.
func (j *bodyJob) sentAll() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.sent
}

// headArrived ends the response header timeout: from now on the response
// body's reads arm their own deadlines.
func (j *bodyJob) headArrived() {
	j.mu.Lock()
	j.headDone = true
	j.mu.Unlock()
}

// run performs the exchange. keep reports that the client connection may
// carry another request; retry that nothing reached the client and the
// request may be sent again on a fresh connection.
func (x *exchange) run() (keep, retry bool) {
	c, out, e := x.c, x.out, x.e
	cfg := &c.srv.cfg
	idle := cfg.IdleTimeout
	x.headWait = min(cfg.ResponseHeaderTimeout, idle)
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

	if x.info.body.kind == bodyNone {
		// One deadline covers sending the head and the response head's
		// wait: a peer that takes neither in time stalled alike.
		_ = out.Conn.SetDeadline(x.now.Add(x.headWait))
		if _, err := out.Conn.Write(c.wbuf); err != nil {
			return x.noResponse(err)
		}
	} else {
		// The response header timeout starts once the body is sent; until
		// then each wait is bounded by idle.
		_ = out.Conn.SetReadDeadline(x.now.Add(idle))
		x.job = &bodyJob{done: make(chan struct{})}
		x.job.bc = bodyCopy{dst: out.Conn, src: &c.in, fr: x.info.body, idle: idle, prefix: c.wbuf,
			readAll: &x.job.readAll, stop: &x.job.stop}
		go x.job.run(out.Conn, x.headWait)
	}

	headReq := string(c.req.method) == "HEAD"
	for {
		b, err := c.up.readHead(cfg.MaxHeadBytes)
		if err != nil {
			if isTimeout(err) && x.job != nil && x.job.waitMore(out.Conn, idle, x.headWait) {
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
		x.rearmHeadWait()
	}
	if x.job != nil {
		x.job.headArrived()
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
	// The head and a small body were batched in one buffer grown from
	// c.rbuf: keep the larger one for the next response.
	if cap(bc.pending) > cap(c.rbuf) && cap(bc.pending) <= keepBufMax {
		c.rbuf = bc.pending[:0]
	}
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

// rearmHeadWait starts the wait for the final response head again after an
// interim response: by idle while a request body still streams, else the
// response header timeout.
func (x *exchange) rearmHeadWait() {
	now := time.Now()
	if j := x.job; j != nil {
		j.mu.Lock()
		defer j.mu.Unlock()
		if !j.sent {
			_ = x.out.Conn.SetReadDeadline(now.Add(x.c.srv.cfg.IdleTimeout))
			return
		}
	}
	_ = x.out.Conn.SetReadDeadline(now.Add(x.headWait))
}

// noResponse handles a failure before the final response head arrived: a
// retry on a fresh connection when that is safe, else an error reply. A
// response head that did not come in time counts against the upstream.
func (x *exchange) noResponse(err error) (keep, retry bool) {
	c, out := x.c, x.out
	stalled := isTimeout(err) && (x.job == nil || x.job.sentAll())
	if stalled {
		err = &stallError{after: x.headWait, err: err}
		x.report(err)
	}
	// Nothing read from the origin means nothing reached the client.
	fresh := x.job == nil && c.up.total == 0
	switch {
	case stalled && fresh && safeMethod(c.req.method):
		x.stalled = true
		x.retryErr = err
	case !stalled && fresh && out.Reused && !isTimeout(err) && !errors.Is(err, errBadResponse):
		x.retryErr = fmt.Errorf("%w: %w", errNoResponse, err)
	}
	if x.retryErr != nil {
		c.untrack()
		out.Done(false)
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
	switch {
	case stalled:
	case isTimeout(err):
		err = fmt.Errorf("%w: %w: %w", dial.ErrTimeout, errNoResponse, err)
	default:
		err = fmt.Errorf("%w: %w", errNoResponse, err)
	}
	c.fail(x.e, err)
	return false, false
}

// safeMethod reports the methods a request may be repeated with after the
// origin may have seen it (RFC 9110 §9.2.1, §9.2.2: safe, hence idempotent;
// PUT and DELETE are idempotent too but usually change state on the first
// copy already, and are left to the client).
func safeMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// report tells Config.Failures that the exchange's upstream failed it.
func (x *exchange) report(err error) {
	r := x.c.srv.cfg.Failures
	if r == nil || x.out.Upstream == "" {
		return
	}
	ctx, cancel := context.WithTimeout(x.c.ctx, reportTimeout)
	defer cancel()
	r.ReportFailure(ctx, x.out.Upstream, err)
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
	if c := x.c; cap(j.bc.pending) > cap(c.wbuf) && cap(j.bc.pending) <= keepBufMax {
		c.wbuf = j.bc.pending[:0]
	}
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
	reusable = c.untrack() && reusable
	if reusable {
		// The next user starts without deadlines; a connection that is
		// closed needs no clearing.
		_ = out.Conn.SetDeadline(time.Time{})
	}
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
