package tunnel

import (
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// accessEntry collects one access-log line: one per CONNECT tunnel, per
// forward request, and per request refused before it named a target.
type accessEntry struct {
	proto    dial.Protocol
	start    time.Time
	target   string
	user     string
	upstream string
	attempts int
	up, down int64 // client→target, target→client
	status   int   // HTTP status sent to the client, 0 for none
	result   string
	err      error
	ready    time.Duration  // start → outbound ready, 0 if never
	dials    []dial.Attempt // the dialer's attempts, for the Observer
}

// noteDialErr records which upstream and attempt a failed dial reached.
func (e *accessEntry) noteDialErr(err error) {
	if de, ok := asDialError(err); ok {
		e.upstream = de.Upstream
		e.attempts += de.Attempt
		e.dials = de.Attempts
	}
}

// noteOutbound records the upstream and attempts of a dial established at
// now.
func (e *accessEntry) noteOutbound(out *dial.Outbound, now time.Time) {
	e.upstream = out.Upstream
	e.attempts += len(out.Attempts)
	e.ready = now.Sub(e.start)
	e.dials = out.Attempts
}

// logAccess writes e as one Info line with message "tunnel", with "tls":
// true when the client came in over TLS. Errors are rendered with their
// text, which never holds credentials.
func (c *conn) logAccess(e *accessEntry) {
	ce := c.srv.log.Check(zap.InfoLevel, "tunnel")
	if ce == nil && c.srv.cfg.Observer == nil {
		return
	}
	d := time.Since(e.start)
	c.observe(e, d)
	if ce == nil {
		return
	}
	fields := [...]zap.Field{
		zap.String("client", c.clientAddr()),
		zap.String("user", e.user),
		zap.String("proto", e.proto.String()),
		zap.String("target", e.target),
		zap.String("upstream", e.upstream),
		zap.Int("attempts", e.attempts),
		zap.Int64("up", e.up),
		zap.Int64("down", e.down),
		zap.Duration("duration", d),
		zap.String("result", e.result),
		zap.Int("status", e.status),
		zap.Skip(),
		zap.Skip(),
	}
	if c.tls {
		fields[len(fields)-2] = zap.Bool("tls", true)
	}
	if e.err != nil {
		fields[len(fields)-1] = zap.String("error", e.err.Error())
	}
	ce.Write(fields[:]...)
}
