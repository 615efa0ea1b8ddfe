package rotate

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"gopkg.in/yaml.v3"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
)

// writeList writes entries as a list file and returns its path.
func writeList(t *testing.T, name string, entries ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	body := ""
	for _, e := range entries {
		body += e + "\n"
	}
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

func newTestRouter(t *testing.T, cfg RouterConfig) *Router {
	t.Helper()
	if cfg.Pool.Logger == nil {
		cfg.Pool.Logger = zaptest.NewLogger(t)
	}
	r, err := NewRouter(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	require.NoError(t, r.Reload(context.Background()))
	return r
}

func TestRouterSendsHostsToPools(t *testing.T) {
	origin := startEchoOrigin(t)
	_, port, _ := net.SplitHostPort(origin.addr)
	resi := startHTTPProxy(t, "127.0.0.151", proxyOpts{})
	dc1 := startSOCKSProxy(t, "127.0.0.152", proxyOpts{})
	dc2 := startSOCKSProxy(t, "127.0.0.153", proxyOpts{})
	r := newTestRouter(t, RouterConfig{
		Pools: map[string]PoolSpec{
			"residential": {Upstreams: []string{writeList(t, "resi.txt", "http://"+resi.addr)}},
			"datacenter":  {Upstreams: []string{writeList(t, "dc.txt", "socks5h://"+dc1.addr, "socks5h://"+dc2.addr)}, Policy: PolicyRandom},
		},
		Rules: []Rule{
			{Host: "LOCALHOST", Pool: "residential"},
			{Host: `/^127\.0\.0\.1$/`, Pool: "datacenter", Policy: PolicyRoundRobin},
			{Host: "*", Pool: "datacenter"},
		},
		Prober: ProberConfig{Interval: -1},
	})
	for range 4 {
		dialed := func(target string) string { return via(t, r, &dial.Request{Target: target}) }
		assert.Equal(t, "127.0.0.151", dialed("localhost:"+port))
		assert.Contains(t, []string{"127.0.0.152", "127.0.0.153"}, dialed("127.0.0.1:"+port))
	}
	assert.Equal(t, int64(4), resi.connects.Load())
	assert.Equal(t, int64(2), dc1.connects.Load(), "the rule's round robin over the datacenter pool")
	assert.Equal(t, int64(2), dc2.connects.Load())

	for target, want := range map[string]struct {
		pool string
		rule int
	}{
		"localhost:80": {"residential", 0}, "localhost.:80": {"residential", 0}, "127.0.0.1:1": {"datacenter", 1},
		"example.com:443": {"datacenter", 2}, "[::1]:80": {"datacenter", 2},
	} {
		pool, rule := r.Route(target)
		assert.Equal(t, want.pool, pool, target)
		assert.Equal(t, want.rule, rule, target)
	}
	assert.Equal(t, []string{"datacenter", "residential"}, r.PoolNames())
	st := r.Status()
	require.Len(t, st, 2)
	assert.Equal(t, "datacenter", st[0].Name)
	assert.Equal(t, PolicyRandom, st[0].Policy)
	assert.Equal(t, 2, st[0].Healthy)
	assert.Len(t, st[0].Upstreams, 2)
	assert.NotNil(t, r.Pool("residential"))
	assert.Nil(t, r.Pool("nope"))
	assert.Nil(t, r.Prober("residential"), "probing is off")
}

func TestRouterDefaultRoute(t *testing.T) {
	one := newTestRouter(t, RouterConfig{Pools: map[string]PoolSpec{"only": {Upstreams: []string{"direct"}}}})
	pool, rule := one.Route("anything:1")
	assert.Equal(t, "only", pool)
	assert.Equal(t, -1, rule)
	assert.NotNil(t, one.Prober("only"), "probing is on by default")

	two := newTestRouter(t, RouterConfig{
		Pools: map[string]PoolSpec{"default": {Upstreams: []string{"direct"}}, "x": {Upstreams: []string{"direct://127.0.0.154"}}},
		Rules: []Rule{{Host: "*.x.test", Pool: "x"}},
	})
	pool, _ = two.Route("a.x.test:443")
	assert.Equal(t, "x", pool)
	pool, _ = two.Route("elsewhere:443")
	assert.Equal(t, DefaultPoolName, pool)

	origin := startEchoOrigin(t)
	out, err := two.Dial(context.Background(), &dial.Request{Target: origin.addr})
	require.NoError(t, err)
	assert.Equal(t, "direct", out.Upstream)
	out.Done(false)
}

func TestRouterConfigFromYAML(t *testing.T) {
	doc := `
pools:
  residential: { upstreams: [lists/resi.txt], policy: round-robin }
  datacenter:  { upstreams: [https://example.net/list.txt], policy: least-latency }
rules:                      # first match wins; host is a glob or /regex/
  - { host: "*.shop.example", pool: residential, min-interval: 2s, reserve: true }
  - { host: "/^api[0-9]+\\.example$/", pool: datacenter, policy: weighted, retries: 0 }
  - { host: "*", pool: datacenter }
`
	var cfg RouterConfig
	require.NoError(t, yaml.Unmarshal([]byte(doc), &cfg))
	assert.Equal(t, PoolSpec{Upstreams: []string{"lists/resi.txt"}, Policy: PolicyRoundRobin}, cfg.Pools["residential"])
	assert.Equal(t, PolicyLeastLatency, cfg.Pools["datacenter"].Policy)
	require.Len(t, cfg.Rules, 3)
	assert.Equal(t, Rule{Host: "*.shop.example", Pool: "residential", MinInterval: 2 * time.Second, Reserve: true}, cfg.Rules[0])
	require.NotNil(t, cfg.Rules[1].Retries)
	assert.Equal(t, 0, *cfg.Rules[1].Retries)
	assert.Equal(t, PolicyWeighted, cfg.Rules[1].Policy)
	require.NoError(t, cfg.Validate())

	r, err := NewRouter(cfg)
	require.NoError(t, err)
	assert.Equal(t, 1, r.rules[1].opts.attempts, "retries: 0 means one attempt")
	assert.Equal(t, 2*time.Second, r.rules[0].opts.minInterval)

	var bad RouterConfig
	err = yaml.Unmarshal([]byte("pools: { a: { upstreams: [x], policy: fastest } }"), &bad)
	assert.ErrorIs(t, err, ErrBadPolicy, "an unknown policy fails to decode")
}

func TestRouterConfigValidate(t *testing.T) {
	pools := map[string]PoolSpec{"a": {Upstreams: []string{"x"}}, "b": {Upstreams: []string{"y"}}}
	two := 2
	tooMany := 99
	cases := map[string]RouterConfig{
		"no pools":          {},
		"no sources":        {Pools: map[string]PoolSpec{"a": {}}},
		"empty source":      {Pools: map[string]PoolSpec{"a": {Upstreams: []string{""}}}},
		"bad pool name":     {Pools: map[string]PoolSpec{"a b": {Upstreams: []string{"x"}}}},
		"unknown pool":      {Pools: pools, Rules: []Rule{{Host: "*", Pool: "c"}}},
		"bad pattern":       {Pools: pools, Rules: []Rule{{Host: "/(/", Pool: "a"}, {Host: "*", Pool: "a"}}},
		"bad policy":        {Pools: pools, Rules: []Rule{{Host: "*", Pool: "a", Policy: 77}}},
		"pool policy":       {Pools: map[string]PoolSpec{"a": {Upstreams: []string{"x"}, Policy: 77}}},
		"retries":           {Pools: pools, Rules: []Rule{{Host: "*", Pool: "a", Retries: &tooMany}}},
		"negative interval": {Pools: pools, Rules: []Rule{{Host: "*", Pool: "a", MinInterval: -1}}},
		"after catch-all":   {Pools: pools, Rules: []Rule{{Host: "*", Pool: "a"}, {Host: "x", Pool: "b"}}},
		"no default":        {Pools: pools, Rules: []Rule{{Host: "x", Pool: "a"}}},
		"bad pool config":   {Pools: pools, Rules: []Rule{{Host: "*", Pool: "a"}}, Pool: Config{Quarantine: -1}},
		"bad prober":        {Pools: pools, Rules: []Rule{{Host: "*", Pool: "a"}}, Prober: ProberConfig{URL: "gopher://x"}},
		"bad updater":       {Pools: pools, Rules: []Rule{{Host: "*", Pool: "a"}}, Updater: UpdaterConfig{Interval: -1}},
	}
	for name, cfg := range cases {
		err := cfg.Validate()
		assert.Error(t, err, name)
		_, err = NewRouter(cfg)
		assert.Error(t, err, name)
	}
	ok := RouterConfig{Pools: pools, Rules: []Rule{{Host: "x", Pool: "a", Retries: &two}, {Host: "*", Pool: "b"}}}
	assert.NoError(t, ok.Validate())
	assert.ErrorIs(t, (&RouterConfig{Pools: pools}).Validate(), ErrNoDefaultRule)
	unknown := cases["unknown pool"]
	assert.ErrorIs(t, unknown.Validate(), ErrBadRule)
}

func TestRouterRunAndReload(t *testing.T) {
	list := writeList(t, "l.txt", "a.example:1")
	r, err := NewRouter(RouterConfig{
		Pools:   map[string]PoolSpec{"p": {Upstreams: []string{list}}},
		Pool:    Config{Logger: zaptest.NewLogger(t)},
		Updater: UpdaterConfig{Interval: 20 * time.Millisecond},
		Prober:  ProberConfig{Interval: time.Hour},
	})
	require.NoError(t, err)
	defer r.Close()
	assert.Zero(t, r.Pool("p").Len(), "nothing loaded before Run or Reload")
	stop := testnet.Go(t, "router", r.Run)
	waitFor(t, func() bool { return r.Pool("p").Len() == 1 }, "initial load")
	require.NoError(t, os.WriteFile(list, []byte("a.example:1\nb.example:2\n"), 0o600))
	waitFor(t, func() bool { return r.Pool("p").Len() == 2 }, "periodic reload")
	stop()
	require.NoError(t, os.WriteFile(list, []byte("c.example:3\n"), 0o600))
	require.NoError(t, r.Reload(context.Background()))
	assert.Equal(t, "http://c.example:3", r.Pool("p").Upstreams()[0].Label())
}

func TestMinIntervalWithTwoTargets(t *testing.T) {
	origin := startEchoOrigin(t)
	_, port, _ := net.SplitHostPort(origin.addr)
	u1 := startHTTPProxy(t, "127.0.0.155", proxyOpts{})
	u2 := startHTTPProxy(t, "127.0.0.156", proxyOpts{})
	clock := newFakeClock()
	r := newTestRouter(t, RouterConfig{
		Pools: map[string]PoolSpec{"p": {Upstreams: []string{writeList(t, "p.txt", "http://"+u1.addr, "http://"+u2.addr)}}},
		Rules: []Rule{{Host: "*", Pool: "p", MinInterval: time.Second}},
		Pool:  Config{Clock: clock, MaxQueueWait: 5 * time.Second},
	})
	a := "localhost:" + port
	b := "127.0.0.1:" + port
	exit := func(target string) string { return via(t, r, &dial.Request{Target: target}) }
	// Each host may use each upstream once per second; hosts are
	// independent of each other.
	first := []string{exit(a), exit(a), exit(b), exit(b)}
	assert.ElementsMatch(t, []string{"127.0.0.155", "127.0.0.156"}, first[:2])
	assert.ElementsMatch(t, []string{"127.0.0.155", "127.0.0.156"}, first[2:])
	assert.Zero(t, clock.sleeping(), "nobody waited so far")

	// A third request for host a waits for the first slot to free, on a
	// timer (the fake clock), not by polling.
	got := make(chan string, 1)
	go func() { got <- exit(a) }()
	clock.waitSleepers(t, 1)
	select {
	case src := <-got:
		t.Fatalf("did not wait: went through %s", src)
	default:
	}
	clock.Advance(time.Second)
	select {
	case src := <-got:
		assert.Equal(t, first[0], src, "the upstream free soonest")
	case <-time.After(10 * time.Second):
		t.Fatal("waiter not released")
	}

	// With less patience than the wait, the request fails at once: 503.
	r2 := newTestRouter(t, RouterConfig{
		Pools: map[string]PoolSpec{"p": {Upstreams: []string{writeList(t, "q.txt", "http://"+u1.addr)}}},
		Rules: []Rule{{Host: "localhost", Pool: "p", MinInterval: time.Minute}, {Host: "*", Pool: "p"}},
		Pool:  Config{Clock: clock, MaxQueueWait: 10 * time.Second},
	})
	out, err := r2.Dial(context.Background(), &dial.Request{Target: a})
	require.NoError(t, err)
	out.Done(false)
	_, err = r2.Dial(context.Background(), &dial.Request{Target: a})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrQueueWait)
	assert.Equal(t, dial.KindNoUpstream, dial.Classify(err))
	out, err = r2.Dial(context.Background(), &dial.Request{Target: b})
	require.NoError(t, err, "another host, another rule: no interval")
	out.Done(false)
	clock.Advance(time.Minute)
	out, err = r2.Dial(context.Background(), &dial.Request{Target: a})
	require.NoError(t, err, "free again after the interval")
	out.Done(false)
}
