package tunnel

import (
	"time"

	"github.com/hopper-proxy/hopper/dial"
)

// newEntry starts the access-log entry of one tunnel or request and tells
// the Observer, which hears of its end from logAccess.
func (c *conn) newEntry(p dial.Protocol) accessEntry {
	if o := c.srv.cfg.Observer; o != nil {
		o.TunnelOpened(p)
	}
	return accessEntry{proto: p, start: time.Now()}
}

// observe tells the Observer how the tunnel or request of e ended, d after
// it started.
func (c *conn) observe(e *accessEntry, d time.Duration) {
	o := c.srv.cfg.Observer
	if o == nil {
		return
	}
	o.TunnelClosed(dial.Record{
		Protocol:    e.proto,
		Result:      e.result,
		Target:      e.target,
		Upstream:    e.upstream,
		Attempts:    e.attempts,
		Dials:       e.dials,
		Up:          e.up,
		Down:        e.down,
		Duration:    d,
		Established: e.ready,
		Err:         e.err,
	})
}
