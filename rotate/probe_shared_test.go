package rotate

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
)

// probeNode is one hopper instance's probing side: a pool named "p" on its
// own connection to a shared Redis (prefix "hopper"), with Sync running and
// a prober on its own fake clock, started by run.
type probeNode struct {
	name    string
	pool    *Pool
	pr      *Prober
	clock   *fakeClock
	store   *RedisStore
	stopRun func()
}

func newProbeNode(t *testing.T, srv *redisServer, name string, cfg Config, pcfg ProberConfig, entries ...string) *probeNode {
	t.Helper()
	log := zaptest.NewLogger(t).With(zap.String("instance", name))
	n := &probeNode{name: name, clock: newFakeClock(), store: newTestRedisStore(t, srv, "hopper", log)}
	cfg.Store, cfg.Clock, cfg.Name, cfg.Logger = n.store, n.clock, "p", log
	n.pool = newTestPool(t, cfg, entries...)
	testnet.Go(t, name+" sync", n.pool.Sync)
	pcfg.Logger = log
	n.pr = newTestProber(t, n.pool, pcfg)
	return n
}

func (n *probeNode) run(t *testing.T) { n.stopRun = testnet.Go(t, n.name+" prober", n.pr.Run) }

// leaseKey is the Redis key of the probe lease of the node's i-th upstream.
func (n *probeNode) leaseKey(i int) string {
	return "hopper:" + n.pool.key("probe", n.pool.Upstreams()[i].id)
}

// crash stops the node's prober as a crash would: the probe leases it held
// stay in Redis until they expire. A graceful stop releases them, so crash
// puts them back as they were, with the time they had left.
func (n *probeNode) crash(t *testing.T, c *redis.Client) {
	t.Helper()
	ctx := context.Background()
	type held struct {
		key string
		ttl time.Duration
	}
	var leases []held
	for i := range n.pool.Upstreams() {
		k := n.leaseKey(i)
		if owner, err := c.Get(ctx, k).Result(); err != nil || owner != n.pool.instance {
			continue
		}
		ttl, err := c.PTTL(ctx, k).Result()
		require.NoError(t, err)
		require.Positive(t, ttl, k)
		leases = append(leases, held{k, ttl})
	}
	require.NotEmpty(t, leases, "%s holds no probe lease", n.name)
	n.stopRun()
	for _, l := range leases {
		require.NoError(t, c.Set(ctx, l.key, n.pool.instance, l.ttl).Err())
	}
}

// stats returns the node's i-th upstream's stats.
func (n *probeNode) stats(i int) Stats { return n.pool.Upstreams()[i].Stats() }

// probes returns how often the node probed each upstream itself.
func (n *probeNode) probes() []uint64 {
	var out []uint64
	for _, u := range n.pool.Upstreams() {
		out = append(out, u.Stats().Probes)
	}
	return out
}

// stepRounds moves the nodes' clocks through rounds whole probe rounds of
// slots slots each, one slot at a time, and returns once every node has
// finished them (its probes done) and sleeps in its next round.
func stepRounds(t *testing.T, rounds, slots int, slot time.Duration, nodes ...*probeNode) {
	t.Helper()
	for range rounds * slots {
		for _, n := range nodes {
			n.clock.waitSleepers(t, 1)
		}
		for _, n := range nodes {
			n.clock.Advance(slot)
		}
	}
	for _, n := range nodes {
		n.clock.waitSleepers(t, 1)
	}
}

func sum(a, b []uint64) []uint64 {
	out := make([]uint64, len(a))
	for i := range a {
		out[i] = a[i] + b[i]
	}
	return out
}

func repeat(v uint64, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// TestSharedProbingOncePerInterval: two instances on one Redis probe each
// upstream once per interval between them, as the upstreams count it, not
// once each.
func TestSharedProbingOncePerInterval(t *testing.T) {
	srv := startRedis(t)
	var proxies []*testProxy
	var entries []string
	for _, ip := range []string{"127.0.0.200", "127.0.0.201", "127.0.0.202"} {
		px := startHTTPProxy(t, ip, proxyOpts{})
		proxies = append(proxies, px)
		entries = append(entries, "http://"+px.addr)
	}
	pcfg := ProberConfig{Interval: 3 * time.Second} // TCP connect probes, one 1s slot each
	a := newProbeNode(t, srv, "A", Config{}, pcfg, entries...)
	b := newProbeNode(t, srv, "B", Config{}, pcfg, entries...)
	a.run(t)
	b.run(t)

	const rounds = 4
	stepRounds(t, rounds, 3, time.Second, a, b)
	a.stopRun()
	b.stopRun()
	assert.Equal(t, repeat(rounds, 3), sum(a.probes(), b.probes()),
		"each upstream probed once per round by the two together (A %v, B %v)", a.probes(), b.probes())
	for _, px := range proxies {
		waitFor(t, func() bool { return px.accepted.Load() >= rounds }, "%s to see its probes", px.ip)
		assert.Equal(t, int64(rounds), px.accepted.Load(), "connections at %s", px.ip)
	}
	for i := range proxies {
		sa, sb := a.stats(i), b.stats(i)
		assert.False(t, sa.LastProbeAt.IsZero() || sb.LastProbeAt.IsZero(), "both know when upstream %d was probed", i)
		assert.Equal(t, 1.0, sa.SuccessRate)
		assert.Equal(t, 1.0, sb.SuccessRate)
	}
	requireAllKeysExpire(t, srv.client(t))
}

// TestSharedProbingFindingsReachOtherInstances: what A's probes find (a
// dead upstream, a leaking one, exit IPs and anonymity) reaches B, which
// probes nothing itself while A holds the leases.
func TestSharedProbingFindingsReachOtherInstances(t *testing.T) {
	srv := startRedis(t)
	judgeURL := startTestJudge(t)
	el := startHTTPProxy(t, "127.0.0.203", proxyOpts{})
	tr := startHTTPProxy(t, "127.0.0.204", proxyOpts{forwardHeaders: transparent})
	dead := refusingAddr(t, "127.0.0.205")
	entries := []string{"http://" + el.addr, "http://" + tr.addr, "http://" + dead}
	cfg := Config{FailuresUntilQuarantine: 1}
	pcfg := ProberConfig{Interval: 3 * time.Second, Judge: judgeURL, RequireAnonymity: AnonymityAnonymous, PinExitIP: true}
	a := newProbeNode(t, srv, "A", cfg, pcfg, entries...)
	b := newProbeNode(t, srv, "B", cfg, pcfg, entries...)

	a.run(t)
	stepRounds(t, 1, 3, time.Second, a)
	assert.Equal(t, []uint64{1, 1, 1}, a.probes())
	assert.Equal(t, []State{StateHealthy, StateQuarantined, StateQuarantined},
		[]State{a.stats(0).State, a.stats(1).State, a.stats(2).State})
	waitFor(t, func() bool {
		return b.stats(1).State == StateQuarantined && b.stats(2).State == StateQuarantined
	}, "B to honour A's quarantines")
	assert.False(t, b.stats(0).ExitIP.IsValid(), "B has not read any probe record yet")

	before := []int64{el.accepted.Load(), tr.accepted.Load()}
	b.run(t)
	stepRounds(t, 1, 3, time.Second, b)
	assert.Equal(t, []uint64{0, 0, 0}, b.probes(), "A holds every lease: B skips")
	assert.Equal(t, before, []int64{el.accepted.Load(), tr.accepted.Load()}, "no probe traffic from B")
	assert.Nil(t, b.pr.SelfAddrs(), "B did not ask the judge either")

	s0, s1, s2 := b.stats(0), b.stats(1), b.stats(2)
	assert.Equal(t, "127.0.0.203", s0.ExitIP.String())
	assert.Equal(t, AnonymityElite, s0.Anonymity)
	assert.Equal(t, a.stats(0).ProbeLatency, s0.ProbeLatency, "the prober's latency, for the policies")
	assert.Equal(t, a.stats(0).LastProbeAt, s0.LastProbeAt)
	assert.Equal(t, "127.0.0.204", s1.ExitIP.String())
	assert.Equal(t, AnonymityTransparent, s1.Anonymity)
	assert.ErrorIs(t, s1.LastError, ErrLeak)
	assert.ErrorIs(t, s2.LastError, dial.ErrUpstream)
	assert.Equal(t, a.stats(2).LastError.Error(), s2.LastError.Error())
	assert.Less(t, s2.SuccessRate, 1.0, "the failed probe counts in B's success rate too")
	assert.Equal(t, 1.0, s1.SuccessRate, "a leaking upstream still answered")
}

// TestSharedProbingWithoutRedis: with Redis gone every instance probes
// everything itself; when it is back they share the work again.
func TestSharedProbingWithoutRedis(t *testing.T) {
	srv := startRedis(t)
	var entries []string
	for _, ip := range []string{"127.0.0.206", "127.0.0.207", "127.0.0.208"} {
		entries = append(entries, "http://"+startHTTPProxy(t, ip, proxyOpts{}).addr)
	}
	pcfg := ProberConfig{Interval: 3 * time.Second}
	a := newProbeNode(t, srv, "A", Config{}, pcfg, entries...)
	b := newProbeNode(t, srv, "B", Config{}, pcfg, entries...)
	a.run(t)
	b.run(t)
	stepRounds(t, 1, 3, time.Second, a, b)
	assert.Equal(t, repeat(1, 3), sum(a.probes(), b.probes()))

	srv.stop()
	pa, pb := a.probes(), b.probes()
	stepRounds(t, 2, 3, time.Second, a, b)
	assert.True(t, a.store.Health().Degraded && b.store.Health().Degraded)
	assert.Equal(t, sum(pa, repeat(2, 3)), a.probes(), "A probes everything itself")
	assert.Equal(t, sum(pb, repeat(2, 3)), b.probes(), "B probes everything itself")

	srv.restart()
	waitFor(t, func() bool { return !a.store.Health().Degraded && !b.store.Health().Degraded }, "the stores to recover")
	stepRounds(t, 1, 3, time.Second, a, b) // settle: the first calls find the store empty
	pa, pb = a.probes(), b.probes()
	stepRounds(t, 2, 3, time.Second, a, b)
	assert.Equal(t, sum(sum(pa, pb), repeat(2, 3)), sum(a.probes(), b.probes()), "shared again: once per round")
}

// TestSharedProbingTakeoverAfterCrash: when the instance holding the
// leases stops, another takes over once they expire, and compares the exit
// IP with the one the first pinned.
func TestSharedProbingTakeoverAfterCrash(t *testing.T) {
	srv := startRedis(t)
	judgeURL := startTestJudge(t)
	pinned := startHTTPProxy(t, "127.0.0.209", proxyOpts{})
	plain := startSOCKSProxy(t, "127.0.0.210", proxyOpts{})
	entries := []string{"http://" + pinned.addr, "socks5://" + plain.addr}
	// Two slots of 500ms; leases last 1s + 500ms + 1s of real time.
	pcfg := ProberConfig{Interval: time.Second, Timeout: time.Second, Judge: judgeURL, PinExitIP: true}
	a := newProbeNode(t, srv, "A", Config{}, pcfg, entries...)
	b := newProbeNode(t, srv, "B", Config{}, pcfg, entries...)
	slot := 500 * time.Millisecond

	a.run(t)
	stepRounds(t, 1, 2, slot, a)
	require.Equal(t, []uint64{1, 1}, a.probes())
	b.run(t)
	stepRounds(t, 1, 2, slot, b)
	require.Equal(t, []uint64{0, 0}, b.probes(), "A holds the leases")
	assert.Equal(t, "127.0.0.209", b.stats(0).ExitIP.String())

	a.crash(t, srv.client(t)) // A dies: its leases are neither renewed nor released
	pinned.setEgress("127.0.0.211")
	took := func() bool { p := b.probes(); return p[0] > 0 && p[1] > 0 }
	for deadline := time.Now().Add(20 * time.Second); !took(); {
		require.False(t, time.Now().After(deadline), "B never took over A's probes (B %v)", b.probes())
		b.clock.waitSleepers(t, 1)
		b.clock.Advance(slot)
		time.Sleep(20 * time.Millisecond) // the leases expire in real time; do not spin
	}
	waitFor(t, func() bool { return b.stats(0).State == StateQuarantined },
		"B to quarantine the upstream whose exit moved from the one A pinned")
	s := b.stats(0)
	assert.ErrorIs(t, s.LastError, ErrExitIPChanged, "B compared with the exit A pinned")
	assert.Equal(t, "127.0.0.211", s.ExitIP.String())
	assert.Equal(t, []uint64{1, 1}, a.probes(), "A probed nothing more")
	owner, err := srv.client(t).Get(context.Background(), "hopper:pool:p:probe:"+b.pool.Upstreams()[1].id).Result()
	require.NoError(t, err)
	assert.Equal(t, b.pool.instance, owner, "B holds the lease now")
}

// TestSharedProbingReleaseOnStop: an instance that stops gracefully releases
// its probe leases, so another probes those upstreams in its next round
// instead of after the leases' TTL; a lease another instance took meanwhile
// is left alone.
func TestSharedProbingReleaseOnStop(t *testing.T) {
	srv := startRedis(t)
	rc := srv.client(t)
	ctx := context.Background()
	var entries []string
	for _, ip := range []string{"127.0.0.213", "127.0.0.214", "127.0.0.215"} {
		entries = append(entries, "http://"+startHTTPProxy(t, ip, proxyOpts{}).addr)
	}
	// Leases last 3s + 1s + 1m of real time: far longer than this test, so
	// only a release lets B take them.
	pcfg := ProberConfig{Interval: 3 * time.Second, Timeout: time.Minute}
	a := newProbeNode(t, srv, "A", Config{}, pcfg, entries...)
	b := newProbeNode(t, srv, "B", Config{}, pcfg, entries...)

	a.run(t)
	stepRounds(t, 1, 3, time.Second, a)
	require.Equal(t, []uint64{1, 1, 1}, a.probes())
	b.run(t)
	stepRounds(t, 1, 3, time.Second, b)
	require.Equal(t, []uint64{0, 0, 0}, b.probes(), "A holds the leases")

	// As if A's lease of the third upstream had expired and another
	// instance had taken it.
	require.NoError(t, rc.Set(ctx, a.leaseKey(2), "C", time.Minute).Err())
	a.stopRun()
	for i := range 2 {
		n, err := rc.Exists(ctx, a.leaseKey(i)).Result()
		require.NoError(t, err)
		assert.Zero(t, n, "A released its lease of upstream %d", i)
	}
	owner, err := rc.Get(ctx, a.leaseKey(2)).Result()
	require.NoError(t, err)
	assert.Equal(t, "C", owner, "A left C's lease alone")

	stepRounds(t, 1, 3, time.Second, b)
	assert.Equal(t, []uint64{1, 1, 0}, b.probes(), "B probes what A held in its next round; C holds the third")
	assert.Equal(t, []uint64{1, 1, 1}, a.probes(), "A probed nothing more")
	for i := range 2 {
		owner, err := rc.Get(ctx, b.leaseKey(i)).Result()
		require.NoError(t, err)
		assert.Equal(t, b.pool.instance, owner, "B holds the lease of upstream %d", i)
	}
}

// TestSharedProbingStopWithRedisDown: a graceful stop while Redis is down,
// gone or stuck without answering, still returns: releasing the leases is
// bounded by the store's own timeout, and their TTL frees them instead.
func TestSharedProbingStopWithRedisDown(t *testing.T) {
	for _, c := range []struct {
		name string
		down func(*redisServer)
	}{
		{"killed", (*redisServer).stop},
		{"paused", (*redisServer).pause},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startRedis(t)
			var entries []string
			for _, ip := range []string{"127.0.0.216", "127.0.0.217"} {
				entries = append(entries, "http://"+startHTTPProxy(t, ip, proxyOpts{}).addr)
			}
			// Leases last over a minute; the store's timeout is 2s.
			pcfg := ProberConfig{Interval: 2 * time.Second, Timeout: time.Minute}
			a := newProbeNode(t, srv, "A", Config{}, pcfg, entries...)
			a.run(t)
			stepRounds(t, 1, 2, time.Second, a)
			require.Equal(t, []uint64{1, 1}, a.probes())

			c.down(srv)
			// stopRun fails the test unless Run returns within 10s of its
			// cancellation: generous beside the store's timeout, short
			// beside the leases' TTL.
			a.stopRun()
			srv.resume()
			assert.True(t, a.store.Health().Degraded, "the release found the store down")
			assert.Equal(t, []uint64{1, 1}, a.probes())
		})
	}
}

// TestProbeRecordsStayLocal: a pool on a memory store writes no probe
// records and takes no leases; its Run probes everything, as before.
func TestProbeRecordsStayLocal(t *testing.T) {
	px := startHTTPProxy(t, "127.0.0.212", proxyOpts{})
	clock := newFakeClock()
	store := NewMemoryStore(clock)
	p := newTestPool(t, Config{Clock: clock, Store: store}, "http://"+px.addr)
	pr := newTestProber(t, p, ProberConfig{Interval: time.Second})
	stop := testnet.Go(t, "prober", pr.Run)
	for i := range 3 {
		clock.waitSleepers(t, 1)
		clock.Advance(time.Second)
		waitFor(t, func() bool { return p.Upstreams()[0].Stats().Probes == uint64(i+1) }, "probe %d", i+1)
	}
	stop()
	id := p.Upstreams()[0].id
	for _, k := range []string{p.key("probe", id), p.key("probed", id)} {
		_, err := store.Get(context.Background(), k)
		assert.ErrorIs(t, err, ErrNotFound, k)
	}
}

var probeRecordCases = []struct {
	in string
	ok bool
}{
	{"1 0 1500000 3 203.0.113.7 203.0.113.7 ", true},
	{"1735689600000000000 1 0 0 - - upstream connect: dial tcp 127.0.0.1:1: connect: connection refused", true},
	{"1735689600000000000 3 42 1 2001:db8::1 2001:db8::1 upstream leaks the client address: judged transparent", true},
	{"5 4 7 2 ::ffff:192.0.2.1 192.0.2.9 upstream exit IP changed: x, was y", true},
	{"5 2 0 0 - - ", true},
	{"0 0 0 0 - - ", false},            // no time
	{"5 0 -1 0 - - ", false},           // negative latency
	{"5 5 0 0 - - ", false},            // unknown outcome
	{"5 0 0 4 - - ", false},            // unknown anonymity
	{"5 0 0 0 - -", false},             // too few fields
	{"5 0 0 0 1.2.3 - ", false},        // not an address
	{"5 0 0 0 fe80::1%eth0 - ", false}, // zone
	{"5 0 0 0 2001:0db8::1 - ", false}, // not canonical
	{"5 0 0 0 - - bell\a", false},      // control character
	{"5 0 0 0 - - caf\u00e9", false},   // not ASCII
	{"5 0 0 0 - - " + strings.Repeat("x", 301), false},
	{"", false},
}

func TestProbeRecordParse(t *testing.T) {
	for _, c := range probeRecordCases {
		r, ok := parseProbeRecord(c.in)
		require.Equal(t, c.ok, ok, "%q", c.in)
		if ok {
			assert.Equal(t, c.in, string(r.encode()), "round trip of %q", c.in)
		}
	}
	r, ok := parseProbeRecord("9 3 42 1 198.51.100.1 198.51.100.1 leaks")
	require.True(t, ok)
	assert.Equal(t, probeRecord{at: 9, outcome: probeLeaked, latency: 42, anonymity: AnonymityTransparent,
		exit: netip.MustParseAddr("198.51.100.1"), pinned: netip.MustParseAddr("198.51.100.1"), msg: "leaks"}, r)
	assert.Equal(t, "a?b?c", errorText("a\nb\u00e9"[:4]+"c"), "control and non-ASCII bytes are replaced")
	assert.Len(t, errorText(strings.Repeat("y", 1000)), maxProbeErrorText)
}

func TestAdoptProbe(t *testing.T) {
	u := mustUpstreams(t, "http://127.0.0.1:1")[0]
	exit := netip.MustParseAddr("203.0.113.9")
	adoptProbe(u, probeRecord{at: 100, outcome: probeWorked, latency: int64(40 * time.Millisecond),
		anonymity: AnonymityElite, exit: exit, pinned: exit})
	s := u.Stats()
	assert.Equal(t, time.Unix(0, 100), s.LastProbeAt)
	assert.Equal(t, 40*time.Millisecond, s.ProbeLatency)
	assert.Equal(t, exit, s.ExitIP)
	assert.Equal(t, AnonymityElite, s.Anonymity)
	assert.Zero(t, s.Probes, "another instance's probe is not counted as ours")
	assert.NoError(t, s.LastError)

	failed := probeRecord{at: 200, outcome: probeFailed, msg: "upstream connect: refused"}
	adoptProbe(u, failed)
	adoptProbe(u, failed) // read again: adopted once
	adoptProbe(u, probeRecord{at: 150, outcome: probeWorked, latency: 1})
	s = u.Stats()
	assert.InDelta(t, 0.9, s.SuccessRate, 1e-6, "one failure folded in, once")
	assert.Equal(t, 40*time.Millisecond, s.ProbeLatency, "an older record is ignored")
	assert.Equal(t, exit, s.ExitIP, "a record without judge findings keeps the last ones")
	assert.ErrorIs(t, s.LastError, dial.ErrUpstream)
	assert.EqualError(t, s.LastError, "upstream connect: refused")
	assert.Equal(t, time.Unix(0, 200), s.LastErrorAt)

	adoptProbe(u, probeRecord{at: 300, outcome: probeExitChanged})
	assert.True(t, errors.Is(u.Stats().LastError, ErrExitIPChanged))
	assert.Equal(t, ErrExitIPChanged.Error(), u.Stats().LastError.Error(), "no text: the sentinel's")
}

// FuzzProbeRecord: nothing panics; what parses encodes back to the same
// bytes, within bounds.
func FuzzProbeRecord(f *testing.F) {
	for _, c := range probeRecordCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, ok := parseProbeRecord(s)
		if !ok {
			return
		}
		enc := string(r.encode())
		r2, ok := parseProbeRecord(enc)
		require.True(t, ok, "%q encodes to %q, which does not parse", s, enc)
		require.Equal(t, r, r2)
		require.Equal(t, enc, string(r2.encode()))
		require.Positive(t, r.at)
		require.LessOrEqual(t, r.outcome, probeExitChanged)
		require.LessOrEqual(t, len(r.msg), maxProbeErrorText)
	})
}
