package socks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/hopper-proxy/hopper/dial"
)

// A dialer that gives up at the connect deadline on a timer of its own (as
// one does when it sets a conn deadline from ctx and an upstream never
// answers) reports an upstream failure, maybe before ctx is done. The
// client is still told the establishment timed out: 0x04.
func TestSOCKS5ConnectDeadlineIsTimeout(t *testing.T) {
	stalled := dial.DialerFunc(func(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
		dl, _ := ctx.Deadline()
		time.Sleep(time.Until(dl))
		return nil, &dial.Error{Upstream: "http://stalled", Target: req.Target, Attempt: 1,
			Err: fmt.Errorf("%w: upstream handshake: i/o timeout", dial.ErrUpstream)}
	})
	p := startProxy(t, Config{Dialer: stalled, ConnectTimeout: 50 * time.Millisecond})
	for i := 0; i < 5; i++ {
		c := dialProxy(t, p.addr)
		assert.Equal(t, byte(0x04), connect5(t, c, "example.com:443"))
		requireClosed(t, c)
	}
	for _, l := range p.tunnelLogs(t, 5) {
		assert.Equal(t, "timeout", field(l, "result"))
	}
}
