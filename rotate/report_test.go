package rotate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

// TestReportFailureQuarantines: failures seen after the dial (an origin
// banning the exit) count like dial failures, and a failed dial lists its
// attempts in the dial.Error.
func TestReportFailureQuarantines(t *testing.T) {
	a := startHTTPProxy(t, "127.0.0.121", proxyOpts{})
	b := startHTTPProxy(t, "127.0.0.122", proxyOpts{})
	p := newTestPool(t, Config{Clock: newFakeClock()}, "http://"+a.addr, "http://"+b.addr)
	label := p.Upstreams()[0].Label()
	ban := errors.New("origin answered 403 three times")

	assert.False(t, p.ReportFailure(context.Background(), "http://nowhere.example:1", ban))
	for range DefaultFailuresUntilQuarantine {
		require.True(t, p.ReportFailure(context.Background(), label, ban))
	}
	assert.Equal(t, StateQuarantined, p.Upstreams()[0].State())
	assert.Equal(t, []*Upstream{p.Upstreams()[1]}, p.Healthy())
	assert.Equal(t, uint64(DefaultFailuresUntilQuarantine), p.Upstreams()[0].Stats().Failures)

	dead := newTestPool(t, Config{Clock: newFakeClock()}, "http://"+refusingAddr(t, "127.0.0.123"), "http://"+refusingAddr(t, "127.0.0.124"))
	_, err := dead.Dial(context.Background(), &dial.Request{Target: "127.0.0.1:9"})
	var de *dial.Error
	require.ErrorAs(t, err, &de)
	assert.Len(t, de.Attempts, 1+DefaultRetries, "every attempt is listed")
}

// TestReportedFailuresQuarantineDespiteDials: a stalling or banning origin
// is reported after each successful dial; the dials' successes do not wipe
// the reports, so FailuresUntilQuarantine of them in a row quarantine the
// exit, while reports far apart do not.
func TestReportedFailuresQuarantineDespiteDials(t *testing.T) {
	origin := startEchoOrigin(t)
	a := startHTTPProxy(t, "127.0.0.125", proxyOpts{})
	clock := newFakeClock()
	p := newTestPool(t, Config{Clock: clock}, "http://"+a.addr)
	label := p.Upstreams()[0].Label()
	stall := errors.New("no response head within 30s")
	dialOK := func() {
		out, err := p.Dial(context.Background(), &dial.Request{Target: origin.addr})
		require.NoError(t, err)
		out.Done(false)
	}

	// Far apart: each report starts the count again.
	for range DefaultFailuresUntilQuarantine {
		dialOK()
		require.True(t, p.ReportFailure(context.Background(), label, stall))
		clock.Advance(DefaultQuarantine + time.Second)
	}
	assert.Equal(t, StateHealthy, p.Upstreams()[0].State())

	// In a row, each after a successful dial: quarantined.
	for range DefaultFailuresUntilQuarantine {
		dialOK()
		require.True(t, p.ReportFailure(context.Background(), label, stall))
		clock.Advance(time.Second)
	}
	assert.Equal(t, StateQuarantined, p.Upstreams()[0].State())
	assert.ErrorIs(t, p.Upstreams()[0].Stats().LastError, stall)
}
