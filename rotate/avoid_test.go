package rotate

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

// labelOf is the label of p's upstream listening on addr.
func labelOf(t *testing.T, p *Pool, addr string) string {
	t.Helper()
	for _, u := range p.Upstreams() {
		if strings.HasSuffix(u.Label(), "://"+addr) || strings.HasSuffix(u.Label(), "@"+addr) {
			return u.Label()
		}
	}
	t.Fatalf("no upstream on %s", addr)
	return ""
}

// A request that avoids an upstream (sent again after that upstream stalled
// it) leaves through another one of the pool whatever the rotation mode
// would have chosen, the avoided one is not charged for it, and the next
// request without Avoid rotates as before.
func TestDialAvoidLeavesThroughAnother(t *testing.T) {
	origin := startEchoOrigin(t)
	a := startHTTPProxy(t, "127.0.0.231", proxyOpts{})
	b := startHTTPProxy(t, "127.0.0.232", proxyOpts{})
	for _, rot := range []Rotation{{Mode: RotatePerRequest}, {Mode: RotatePerConnection}, {Mode: RotateEveryN, Every: 3}} {
		t.Run(rot.String(), func(t *testing.T) {
			p := newTestPool(t, Config{Rotate: rot, Clock: newFakeClock()}, "http://"+a.addr, "http://"+b.addr)
			ups := map[string]string{"127.0.0.231": labelOf(t, p, a.addr), "127.0.0.232": labelOf(t, p, b.addr)}
			other := map[string]string{"127.0.0.231": "127.0.0.232", "127.0.0.232": "127.0.0.231"}
			for conn := uint64(1); conn <= 4; conn++ {
				first, _ := dialSource(t, p, &dial.Request{Target: origin.addr, ConnID: conn})
				// Retries of that request, avoiding the upstream it took
				// (twice, so that round robin comes back to it once).
				for range 2 {
					src, out := dialSource(t, p, &dial.Request{Target: origin.addr, ConnID: conn, Avoid: ups[first]})
					assert.Equal(t, other[first], src, "connection %d: the retry leaves elsewhere", conn)
					assert.Equal(t, ups[src], out.Upstream)
					require.Len(t, out.Attempts, 1, "no attempt was spent on the avoided upstream")
				}
				if rot.Mode != RotatePerRequest {
					again, _ := dialSource(t, p, &dial.Request{Target: origin.addr, ConnID: conn, Seq: 0})
					assert.Equal(t, first, again, "connection %d: Avoid does not move the connection's rotation", conn)
				}
			}
			for _, u := range p.Upstreams() {
				assert.Zero(t, u.Stats().Failures, "avoiding is not charging (ReportFailure is): %s", u.Label())
				assert.Equal(t, StateHealthy, u.State())
			}
		})
	}
}

// A sticky session whose upstream is avoided moves, as after a failed
// dial: the retry leaves through the other upstream and the session's
// later requests stay there.
func TestDialAvoidMovesStickySession(t *testing.T) {
	origin := startEchoOrigin(t)
	a := startHTTPProxy(t, "127.0.0.233", proxyOpts{})
	b := startHTTPProxy(t, "127.0.0.234", proxyOpts{})
	p := newTestPool(t, Config{Clock: newFakeClock()}, "http://"+a.addr, "http://"+b.addr)
	req := func(avoid string) *dial.Request {
		return &dial.Request{Target: origin.addr, User: "u", Session: "s1", Avoid: avoid}
	}
	first, out := dialSource(t, p, req(""))
	bound := out.Upstream
	for range 3 {
		src, _ := dialSource(t, p, req(""))
		require.Equal(t, first, src, "sticky before the stall")
	}

	moved, out := dialSource(t, p, req(bound))
	assert.NotEqual(t, first, moved, "the retry avoids the session's stalled upstream")
	assert.NotEqual(t, bound, out.Upstream)
	for range 3 {
		src, _ := dialSource(t, p, req(""))
		assert.Equal(t, moved, src, "the session moved to the upstream that served the retry")
	}

	// Avoiding an upstream the session is not bound to leaves it alone.
	src, _ := dialSource(t, p, req(bound))
	assert.Equal(t, moved, src)
	src, _ = dialSource(t, p, req("http://elsewhere.example:1"))
	assert.Equal(t, moved, src, "an unknown label changes nothing")
}

// With no other upstream the request goes back through the avoided one;
// a templated upstream gives a sticky session a new provider session (a new
// exit) for it, which the session then keeps, as after a failed dial.
func TestDialAvoidSoleUpstream(t *testing.T) {
	origin := startEchoOrigin(t)
	gw := startHTTPProxy(t, "127.0.0.235", proxyOpts{auth: func(user, pass string) bool { return pass == "pw" }})
	p := newTestPool(t, Config{Clock: newFakeClock()}, "http://u-session-{session}:pw@"+gw.addr)
	label := p.Upstreams()[0].Label()
	req := func(avoid string) *dial.Request {
		return &dial.Request{Target: origin.addr, Session: "s1", Avoid: avoid}
	}
	src, out := dialSource(t, p, req(""))
	assert.Equal(t, "127.0.0.235", src)
	src, out2 := dialSource(t, p, req(label))
	assert.Equal(t, "127.0.0.235", src, "no other upstream: the same one")
	assert.Equal(t, out.Upstream, out2.Upstream)
	dialSource(t, p, req(""))

	users := gw.seenUsers()
	require.Len(t, users, 3)
	assert.NotEqual(t, users[0], users[1], "a new provider session for the retry")
	assert.Equal(t, users[1], users[2], "which the session keeps")

	// Without a session too: the sole upstream serves the retry.
	plain := newTestPool(t, Config{Clock: newFakeClock()}, "http://"+startHTTPProxy(t, "127.0.0.236", proxyOpts{}).addr)
	src, _ = dialSource(t, plain, &dial.Request{Target: origin.addr, ConnID: 3, Avoid: plain.Upstreams()[0].Label()})
	assert.Equal(t, "127.0.0.236", src)
}

// The retry stays within what the original pick could use: the pool the
// target's rule names (never another pool's upstream), with the rule's
// reservation or min-interval queue when it has one; with only the avoided
// upstream in that pool, it goes back there.
func TestDialAvoidKeepsRule(t *testing.T) {
	origin := startEchoOrigin(t)
	_, port, _ := net.SplitHostPort(origin.addr)
	a1 := startHTTPProxy(t, "127.0.0.237", proxyOpts{})
	a2 := startHTTPProxy(t, "127.0.0.238", proxyOpts{})
	solo := startHTTPProxy(t, "127.0.0.239", proxyOpts{})
	for name, rule := range map[string]Rule{
		"plain":        {Host: "localhost", Pool: "a"},
		"reserve":      {Host: "localhost", Pool: "a", Reserve: true},
		"min-interval": {Host: "localhost", Pool: "a", MinInterval: time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			clock := newFakeClock()
			r := newTestRouter(t, RouterConfig{
				Pools: map[string]PoolSpec{
					"a":    {Upstreams: []string{writeList(t, "a.txt", "http://"+a1.addr, "http://"+a2.addr)}},
					"solo": {Upstreams: []string{writeList(t, "solo.txt", "http://"+solo.addr)}},
				},
				Rules:  []Rule{rule, {Host: "*", Pool: "solo"}},
				Pool:   Config{Rotate: Rotation{Mode: RotatePerConnection}, MaxQueueWait: 5 * time.Second, Clock: clock},
				Prober: ProberConfig{Interval: -1},
			})
			pa := r.Pool("a")
			labels := map[string]string{"127.0.0.237": labelOf(t, pa, a1.addr), "127.0.0.238": labelOf(t, pa, a2.addr)}
			target := "localhost:" + port
			for conn := uint64(1); conn <= 2; conn++ {
				first := via(t, r, &dial.Request{Target: target, ConnID: conn})
				require.Contains(t, labels, first)
				clock.Advance(time.Second) // every min-interval slot is free again
				retry := via(t, r, &dial.Request{Target: target, ConnID: conn, Avoid: labels[first]})
				assert.Contains(t, labels, retry, "never another pool's upstream")
				assert.NotEqual(t, first, retry)
			}
			soloLabel := r.Pool("solo").Upstreams()[0].Label()
			assert.Equal(t, "127.0.0.239", via(t, r, &dial.Request{Target: "127.0.0.1:" + port, ConnID: 1, Avoid: soloLabel}),
				"the rule's pool has no other upstream")
		})
	}
}

// A request that avoids every upstream of its pool still gets one, and
// Avoid does not cost the dial its retries on a failed attempt.
func TestDialAvoidWithFailures(t *testing.T) {
	origin := startEchoOrigin(t)
	good := startHTTPProxy(t, "127.0.0.240", proxyOpts{})
	dead := "http://" + refusingAddr(t, "127.0.0.230")
	p := newTestPool(t, Config{Rotate: Rotation{Mode: RotatePerConnection}, Clock: newFakeClock()}, dead, "http://"+good.addr)
	goodLabel := labelOf(t, p, good.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The only other upstream refuses: once every upstream has been
	// through, the dial's retries pick among all of them as usual, and
	// reach the avoided one.
	out, err := p.Dial(ctx, &dial.Request{Target: origin.addr, ConnID: 1, Avoid: goodLabel})
	require.NoError(t, err)
	defer out.Done(false)
	assert.Equal(t, goodLabel, out.Upstream)
	require.GreaterOrEqual(t, len(out.Attempts), 2)
	assert.Error(t, out.Attempts[0].Err)
	assert.NotEqual(t, goodLabel, out.Attempts[0].Upstream, "the other upstream first")
	assert.Equal(t, "127.0.0.240", readFrom(t, out.Conn))
}
