package tunnel

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hopper-proxy/hopper/dial"
)

// Bad requests with a hint of their own.
var (
	errOriginForm = fmt.Errorf("%w: this is a proxy; ask for absolute URIs (GET http://host/path) or use CONNECT host:port", errBadRequest)
	errHTTPSURI   = fmt.Errorf("%w: use CONNECT host:443 for https:// URLs", errBadRequest)
)

// errNoResponse wraps an origin failing before the first byte of its
// response.
var errNoResponse = errors.New("no response")

// Access-log results besides "ok" and the dial.Kind strings.
const (
	resultOK           = "ok"
	resultBadRequest   = "bad-request"
	resultAuthFailed   = "auth-failed"
	resultClientClosed = "client-closed"
	resultInterrupted  = "interrupted"
	resultIdle         = "idle-timeout"
	resultShutdown     = "shutdown"
)

// reply is what an HTTP client is told about a failure.
type reply struct {
	status      int
	hopperError string // Hopper-Error header, "" for none
	body        string // one line, ending in "\n"
	result      string // access-log result
}

// replyFor maps a failure to its reply per DESIGN.md's error table. It is the
// one place HTTP errors are rendered; target names what the client asked
// for ("" when unknown). Bodies never carry credentials: dial errors name
// upstreams by their redacted labels and the root cause is a system error.
func replyFor(err error, target string) reply {
	switch {
	case errors.Is(err, errBadRequest):
		return reply{status: 400, body: "hopper: " + err.Error() + "\n", result: resultBadRequest}
	case errors.Is(err, dial.ErrAuth):
		return reply{status: 407, body: "hopper: proxy authentication required: send Proxy-Authorization: Basic with a valid username and password\n", result: resultAuthFailed}
	}
	kind := dial.Classify(err)
	r := reply{result: kind.String()}
	switch kind {
	case dial.KindDenied:
		r.status = 403
		r.body = "hopper: access to " + target + " is denied by policy\n"
	case dial.KindNoUpstream:
		r.status, r.hopperError = 503, "no-upstream"
		r.body = "hopper: no upstream available for " + target + "; check the upstream list and its health\n"
	case dial.KindTimeout:
		r.status, r.hopperError = 504, "timeout"
		var se *stallError
		switch {
		case errors.As(err, &se):
			r.body = "hopper: no response from " + target + " within " + se.after.String() + "\n"
		case errors.Is(err, errNoResponse):
			r.body = "hopper: no response from " + target + " in time\n"
		default:
			r.body = "hopper: timed out reaching " + target + "\n"
		}
	default:
		r.status, r.hopperError = 502, "upstream-failed"
		verb := "could not reach "
		if errors.Is(err, errNoResponse) {
			verb = "no response from "
		}
		r.body = "hopper: " + verb + target + ": " + rootCause(err).Error() + "\n"
	}
	return r
}

// rootCause is dial.RootCause with this package's sentinels.
func rootCause(err error) error { return dial.RootCause(err, isSentinel) }

func isSentinel(err error) bool {
	for _, s := range [...]error{errBadRequest, errBadResponse, errNoResponse, dial.ErrNoUpstream, dial.ErrDenied,
		dial.ErrTargetRefused, dial.ErrTargetUnreachable, dial.ErrTimeout, dial.ErrUpstream, dial.ErrAuth} {
		if err == s {
			return true
		}
	}
	return false
}

// appendReply renders r as a complete HTTP/1.1 response that closes the
// connection. A response to HEAD carries no body.
func appendReply(dst []byte, r reply, headReq bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(r.status), 10)
	dst = append(dst, ' ')
	dst = append(dst, statusText(r.status)...)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(r.body)), 10)
	dst = append(dst, "\r\nConnection: close\r\n"...)
	if r.status == 407 {
		dst = append(dst, "Proxy-Authenticate: Basic realm=\"hopper\"\r\n"...)
	}
	if r.hopperError != "" {
		dst = append(dst, "Hopper-Error: "...)
		dst = append(dst, r.hopperError...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	if !headReq {
		dst = append(dst, r.body...)
	}
	return dst
}

func statusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 407:
		return "Proxy Authentication Required"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	}
	return "Error"
}

// fail answers the client with the reply for err, logs the access line and
// closes the connection. Nothing may have been sent for this request yet.
func (c *conn) fail(e *accessEntry, err error) {
	r := replyFor(err, e.target)
	if c.wasForced() {
		r.result = resultShutdown
	}
	e.result, e.err, e.status = r.result, err, r.status
	headReq := string(c.req.method) == "HEAD"
	c.rbuf = appendReply(c.rbuf[:0], r, headReq)
	_ = c.rwc.SetWriteDeadline(time.Now().Add(c.srv.cfg.HeaderTimeout))
	_, _ = c.rwc.Write(c.rbuf)
	c.logAccess(e)
	c.closeLingering()
}
