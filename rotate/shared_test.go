package rotate

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/dial"
)

// instance is one hopper's egress side: a Router on its own connection to
// a store, with Run going until cleanup (or kill).
type instance struct {
	name   string
	r      *Router
	store  Store
	cancel context.CancelFunc
	done   chan struct{}
}

// startInstance builds and runs a router for cfg on store.
func startInstance(t *testing.T, name string, store Store, cfg RouterConfig) *instance {
	t.Helper()
	cfg.Pool.Store = store
	if cfg.Pool.Logger == nil {
		cfg.Pool.Logger = zaptest.NewLogger(t).With(zap.String("instance", name))
	}
	if cfg.Prober.Interval == 0 {
		cfg.Prober.Interval = -1
	}
	r, err := NewRouter(cfg)
	require.NoError(t, err)
	require.NoError(t, r.Reload(context.Background()))
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{name: name, r: r, store: store, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(in.done)
		assert.NoError(t, r.Run(ctx))
	}()
	t.Cleanup(func() {
		in.kill()
		_ = r.Close()
	})
	return in
}

// kill stops the instance's background work at once, as a crash would:
// nothing is released or renewed any more.
func (in *instance) kill() {
	in.cancel()
	<-in.done
}

// twoInstances runs two routers with the same config on one Redis, each
// with its own connection, as two hopper processes would.
func twoInstances(t *testing.T, srv *redisServer, cfg RouterConfig) (*instance, *instance) {
	t.Helper()
	a := startInstance(t, "A", newTestRedisStore(t, srv, "hopper", nil), cfg)
	b := startInstance(t, "B", newTestRedisStore(t, srv, "hopper", nil), cfg)
	return a, b
}

// directList writes a list of direct://127.0.0.N egresses for first..first+n-1.
func directList(t *testing.T, first, n int) (string, []string) {
	var ips, entries []string
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", first+i)
		ips = append(ips, ip)
		entries = append(entries, "direct://"+ip)
	}
	return writeList(t, "list.txt", entries...), ips
}

// via dials target through r and returns the source the origin saw.
func via(t *testing.T, r *Router, req *dial.Request) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := r.Dial(ctx, req)
	require.NoError(t, err, req.Target)
	defer out.Done(false)
	return readFrom(t, out.Conn)
}

// TestSharedRoundRobinAcrossInstances: instances on one store rotate
// through the pool as one; on separate memory stores each starts over.
func TestSharedRoundRobinAcrossInstances(t *testing.T) {
	srv := startRedis(t)
	origin := startEchoOrigin(t)
	list, ips := directList(t, 171, 4)
	cfg := RouterConfig{
		Pools: map[string]PoolSpec{"p": {Upstreams: []string{list}}},
		Pool:  Config{CursorBlock: 1},
	}
	req := &dial.Request{Target: origin.addr}

	a, b := twoInstances(t, srv, cfg)
	first := []string{via(t, a.r, req), via(t, a.r, req), via(t, b.r, req), via(t, b.r, req)}
	assert.ElementsMatch(t, ips, first, "two picks on each instance: four different exits")

	counts := map[string]int{}
	for _, s := range first {
		counts[s]++
	}
	for i, who := range "AABABBBABAAB" { // 12 more, unevenly spread
		in := a
		if who == 'B' {
			in = b
		}
		counts[via(t, in.r, req)]++
		_ = i
	}
	for _, ip := range ips {
		assert.Equal(t, 4, counts[ip], "16 picks over 4 exits across both instances: %v", counts)
	}

	// Without a shared store, each instance rotates on its own: the same
	// four picks reuse the first exits.
	m1 := startInstance(t, "M1", NewMemoryStore(nil), cfg)
	m2 := startInstance(t, "M2", NewMemoryStore(nil), cfg)
	alone := []string{via(t, m1.r, req), via(t, m1.r, req), via(t, m2.r, req), via(t, m2.r, req)}
	assert.Equal(t, alone[:2], alone[2:], "separate memory stores do not share the rotation")
}

// TestSharedQuarantine: failures count together, and a quarantine (or an
// early release) made by one instance holds in the other.
func TestSharedQuarantine(t *testing.T) {
	srv := startRedis(t)
	origin := startEchoOrigin(t)
	bad := "http://" + refusingAddr(t, "127.0.0.175")
	list := writeList(t, "list.txt", bad, "direct://127.0.0.176")
	cfg := RouterConfig{
		Pools: map[string]PoolSpec{"p": {Upstreams: []string{list}}},
		Pool:  Config{Retries: -1, CursorBlock: 1, FailuresUntilQuarantine: 3},
	}
	a, b := twoInstances(t, srv, cfg)
	upA, upB := a.r.Pool("p").Upstreams()[0], b.r.Pool("p").Upstreams()[0]

	// The shared rotation sends every other dial to the bad upstream: in
	// this order two of its failures happen on A, one on B.
	fails := map[string]int{}
	for _, in := range []*instance{a, b, b, a, a, b} {
		_, err := in.r.Dial(context.Background(), &dial.Request{Target: origin.addr})
		if err != nil {
			fails[in.name]++
		}
	}
	require.Equal(t, 3, fails["A"]+fails["B"], "%v", fails)
	require.Less(t, fails["A"], 3, "neither instance saw three failures alone: %v", fails)
	require.Less(t, fails["B"], 3, "%v", fails)
	waitFor(t, func() bool { return upA.State() == StateQuarantined && upB.State() == StateQuarantined },
		"both instances to quarantine after three failures in total")
	assert.Equal(t, upA.Stats().QuarantinedUntil, upB.Stats().QuarantinedUntil, "one quarantine, one end")
	for _, in := range []*instance{a, b, a, b} {
		out, err := in.r.Dial(context.Background(), &dial.Request{Target: origin.addr})
		require.NoError(t, err, "the quarantined upstream is skipped on %s", in.name)
		assert.Len(t, out.Attempts, 1)
		out.Done(false)
	}

	// A probe on B finds it working: released on A too.
	require.True(t, b.r.Pool("p").release(upB, "probe succeeded"))
	waitFor(t, func() bool { return upA.State() == StateHealthy }, "A to release it")
	assert.Len(t, a.r.Pool("p").Healthy(), 2)

	// An instance started later learns the current quarantine at once.
	a.r.Pool("p").quarantine(upA, causeFailures, nil)
	waitFor(t, func() bool { return upB.State() == StateQuarantined }, "B to follow A")
	c := startInstance(t, "C", newTestRedisStore(t, srv, "hopper", nil), cfg)
	upC := c.r.Pool("p").Upstreams()[0]
	waitFor(t, func() bool { return upC.State() == StateQuarantined }, "a new instance to learn the quarantine")
	assert.Equal(t, upA.Stats().QuarantinedUntil, upC.Stats().QuarantinedUntil)
	pc := c.r.Pool("p")
	pc.mu.Lock()
	offences := upC.offences
	pc.mu.Unlock()
	assert.Equal(t, 2, offences, "the offence count travels with it (the next period doubles)")
}

// TestSharedStickySession: a session bound on one instance keeps its exit
// on the other, and follows it when it moves.
func TestSharedStickySession(t *testing.T) {
	srv := startRedis(t)
	origin := startEchoOrigin(t)
	list, _ := directList(t, 177, 4)
	a, b := twoInstances(t, srv, RouterConfig{Pools: map[string]PoolSpec{"p": {Upstreams: []string{list}}}})
	sess := &dial.Request{Target: origin.addr, User: "alice", Session: "cart-9"}

	exit := via(t, a.r, sess)
	for range 6 {
		assert.Equal(t, exit, via(t, b.r, sess), "B keeps the session A bound")
		via(t, b.r, &dial.Request{Target: origin.addr}) // B's rotation moves on meanwhile
	}
	other := via(t, b.r, &dial.Request{Target: origin.addr, User: "alice", Session: "cart-10"})
	assert.Equal(t, other, via(t, a.r, &dial.Request{Target: origin.addr, User: "alice", Session: "cart-10"}),
		"and A keeps the one B bound")

	// Its exit is quarantined on B: the session moves there, and A follows.
	var u *Upstream
	for _, x := range b.r.Pool("p").Upstreams() {
		if x.Entry().Local.Addr().String() == exit {
			u = x
		}
	}
	require.NotNil(t, u)
	b.r.Pool("p").quarantine(u, causeFailures, nil)
	moved := via(t, b.r, sess)
	assert.NotEqual(t, exit, moved)
	for range 3 {
		assert.Equal(t, moved, via(t, a.r, sess), "A follows the move")
	}

	// Redis restarts empty: the session keeps its exit from the local
	// tables and is written back for everyone; so is the quarantine.
	srv.restart()
	assert.Equal(t, moved, via(t, a.r, sess))
	waitFor(t, func() bool { return !a.r.StateHealth().Degraded && !b.r.StateHealth().Degraded }, "the stores to heal")
	assert.Equal(t, moved, via(t, a.r, sess))
	assert.Equal(t, moved, via(t, b.r, sess))
	c := startInstance(t, "C", newTestRedisStore(t, srv, "hopper", nil), RouterConfig{Pools: map[string]PoolSpec{"p": {Upstreams: []string{list}}}})
	assert.Equal(t, moved, via(t, c.r, sess), "a new instance finds the session in the restarted store")
	var uc *Upstream
	for _, x := range c.r.Pool("p").Upstreams() {
		if x.Entry().Local.Addr().String() == exit {
			uc = x
		}
	}
	waitFor(t, func() bool { return uc.State() == StateQuarantined }, "the quarantine to be written back and learnt")
}

// TestSharedReservation: a reserved exit is taken for its host on every
// instance until its connection ends, and for that host only.
func TestSharedReservation(t *testing.T) {
	srv := startRedis(t)
	origin := startEchoOrigin(t)
	_, port, _ := net.SplitHostPort(origin.addr)
	list, ips := directList(t, 181, 2)
	cfg := RouterConfig{
		Pools: map[string]PoolSpec{"p": {Upstreams: []string{list}}},
		Rules: []Rule{{Host: "localhost", Pool: "p", Reserve: true}, {Host: "*", Pool: "p"}},
		Pool:  Config{MaxQueueWait: 300 * time.Millisecond},
	}
	a, b := twoInstances(t, srv, cfg)
	shop := "localhost:" + port
	open := func(in *instance, target string) (*dial.Outbound, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := in.r.Dial(ctx, &dial.Request{Target: target})
		if err != nil {
			return nil, "", err
		}
		return out, readFrom(t, out.Conn), nil
	}
	out1, exit1, err := open(a, shop)
	require.NoError(t, err)
	out2, exit2, err := open(b, shop)
	require.NoError(t, err)
	assert.ElementsMatch(t, ips, []string{exit1, exit2}, "B gets the exit A does not hold")

	_, _, err = open(a, shop)
	require.ErrorIs(t, err, ErrReserved, "both exits are held for this host")
	assert.Equal(t, dial.KindNoUpstream, dial.Classify(err), "503 no-upstream")
	_, _, err = open(b, shop)
	require.ErrorIs(t, err, ErrReserved)

	// Another host is not affected.
	for range 4 {
		out, _, err := open(b, "127.0.0.1:"+port)
		require.NoError(t, err)
		out.Done(false)
	}

	// A waiter gets the exit as soon as its tunnel ends.
	long := cfg
	long.Pool.MaxQueueWait = 10 * time.Second
	c := startInstance(t, "C", newTestRedisStore(t, srv, "hopper", nil), long)
	got := make(chan string, 1)
	go func() {
		out, src, err := open(c, shop)
		if assert.NoError(t, err) {
			out.Done(false)
		}
		got <- src
	}()
	time.Sleep(100 * time.Millisecond) // let it start waiting
	out1.Done(false)
	select {
	case src := <-got:
		assert.Equal(t, exit1, src, "the released exit")
	case <-time.After(10 * time.Second):
		t.Fatal("waiter not served after the release")
	}
	out2.Done(false)
	requireAllKeysExpire(t, srv.client(t))
}

// TestSharedReservationExpiresAfterKilledInstance: a live instance keeps
// its reservation past the TTL by renewing it; a killed one loses it to
// the TTL.
func TestSharedReservationExpiresAfterKilledInstance(t *testing.T) {
	srv := startRedis(t)
	origin := startEchoOrigin(t)
	_, port, _ := net.SplitHostPort(origin.addr)
	list, ips := directList(t, 183, 1)
	cfg := RouterConfig{
		Pools: map[string]PoolSpec{"p": {Upstreams: []string{list}}},
		Rules: []Rule{{Host: "*", Pool: "p", Reserve: true}},
		Pool:  Config{MaxQueueWait: 200 * time.Millisecond, ReserveTTL: 600 * time.Millisecond},
	}
	a, b := twoInstances(t, srv, cfg)
	target := "localhost:" + port
	out, err := a.r.Dial(context.Background(), &dial.Request{Target: target})
	require.NoError(t, err)
	defer out.Done(false)

	time.Sleep(1200 * time.Millisecond) // twice the TTL: A renews meanwhile
	_, err = b.r.Dial(context.Background(), &dial.Request{Target: target})
	require.ErrorIs(t, err, ErrReserved, "A's live tunnel still holds the exit")

	a.kill() // no release, no renewal
	long := cfg
	long.Pool.MaxQueueWait = 10 * time.Second
	c := startInstance(t, "C", newTestRedisStore(t, srv, "hopper", nil), long)
	out2, err := c.r.Dial(context.Background(), &dial.Request{Target: target})
	require.NoError(t, err, "the dead instance's reservation expired")
	assert.Equal(t, ips[0], readFrom(t, out2.Conn))
	out2.Done(false)
}
