package socks

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/internal/testnet/dialtest"
)

// A dialer that gives up at the connect deadline on a timer of its own (as
// one does when it sets a conn deadline from ctx and an upstream never
// answers) reports an upstream failure, maybe before ctx is done. The
// client is still told the establishment timed out: 0x04.
func TestSOCKS5ConnectDeadlineIsTimeout(t *testing.T) {
	p := startProxy(t, Config{Dialer: dialtest.MissesDeadline(), ConnectTimeout: 50 * time.Millisecond})
	for i := 0; i < 5; i++ {
		c := testnet.Dial(t, p.addr)
		assert.Equal(t, byte(0x04), connect5(t, c, "example.com:443"))
		testnet.RequireClosed(t, c)
	}
	for _, l := range p.tunnelLogs(t, 5) {
		assert.Equal(t, "timeout", field(l, "result"))
	}
}
