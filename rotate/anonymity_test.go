package rotate

import (
	"context"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/judge"
)

// startTestJudge serves hopper's judge on 127.0.0.1 and returns its URL.
func startTestJudge(t *testing.T) string {
	t.Helper()
	ln := testnet.Listen(t, "")
	s := &judge.Server{Logger: zaptest.NewLogger(t)}
	testnet.Go(t, "judge", func(ctx context.Context) error { return s.Serve(ctx, ln) })
	return "http://" + ln.Addr().String() + "/"
}

func transparent(h http.Header, client string) { h.Add("X-Forwarded-For", client) }
func anonymous(h http.Header, _ string)        { h.Set("Via", "1.1 test-proxy") }

func TestJudgeAnonymityClasses(t *testing.T) {
	judgeURL := startTestJudge(t)
	tr := startHTTPProxy(t, "127.0.0.131", proxyOpts{forwardHeaders: transparent})
	an := startHTTPProxy(t, "127.0.0.132", proxyOpts{forwardHeaders: anonymous})
	el := startHTTPProxy(t, "127.0.0.133", proxyOpts{})
	s5 := startSOCKSProxy(t, "127.0.0.134", proxyOpts{})
	clock := newFakeClock()
	p := newTestPool(t, Config{Clock: clock},
		"http://"+tr.addr, "http://"+an.addr, "http://"+el.addr, "socks5://"+s5.addr, "direct", "direct://127.0.0.135")
	pr := newTestProber(t, p, ProberConfig{Judge: judgeURL, RequireAnonymity: AnonymityElite})

	res := pr.ProbeAll(context.Background())
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, pr.SelfAddrs(), "learned from a direct fetch")
	want := []struct {
		exit string
		anon Anonymity
	}{
		{"127.0.0.131", AnonymityTransparent}, // our address in X-Forwarded-For
		{"127.0.0.132", AnonymityAnonymous},   // Via only
		{"127.0.0.133", AnonymityElite},
		{"127.0.0.134", AnonymityElite},     // a SOCKS tunnel adds nothing
		{"127.0.0.1", AnonymityTransparent}, // no proxy at all: the exit is us
		{"127.0.0.135", AnonymityElite},
	}
	for i, w := range want {
		r := res[i]
		require.NoError(t, r.Err, r.Upstream.Label())
		assert.Equal(t, w.exit, r.ExitIP.String(), r.Upstream.Label())
		assert.Equal(t, w.anon, r.Anonymity, r.Upstream.Label())
		st := r.Upstream.Stats()
		assert.Equal(t, w.exit, st.ExitIP.String())
		assert.Equal(t, w.anon, st.Anonymity)
	}
	states := func() []State {
		var out []State
		for _, u := range p.Upstreams() {
			out = append(out, u.State())
		}
		return out
	}
	assert.Equal(t, []State{StateQuarantined, StateQuarantined, StateHealthy, StateHealthy, StateHealthy, StateHealthy},
		states(), "below elite is quarantined; direct entries are exempt")
	assert.ErrorIs(t, p.Upstreams()[0].Stats().LastError, ErrLeak)

	an.setForwardHeaders(nil) // the anonymous proxy stops adding Via
	pr.ProbeAll(context.Background())
	assert.Equal(t, []State{StateQuarantined, StateHealthy, StateHealthy, StateHealthy, StateHealthy, StateHealthy},
		states(), "a clean probe releases a leaker; a leaking one stays out")
}

func TestJudgePinsExitIP(t *testing.T) {
	judgeURL := startTestJudge(t)
	px := startHTTPProxy(t, "127.0.0.136", proxyOpts{})
	tpl := startHTTPProxy(t, "127.0.0.138", proxyOpts{auth: func(string, string) bool { return true }})
	clock := newFakeClock()
	p := newTestPool(t, Config{Clock: clock}, "http://"+px.addr, "http://u-{session}:p@"+tpl.addr)
	pr := newTestProber(t, p, ProberConfig{Judge: judgeURL, PinExitIP: true})
	u := p.Upstreams()[0]

	pr.ProbeAll(context.Background())
	assert.Equal(t, "127.0.0.136", u.Stats().ExitIP.String())
	px.setEgress("127.0.0.137")
	tpl.setEgress("127.0.0.139")
	pr.ProbeAll(context.Background())
	st := u.Stats()
	assert.Equal(t, StateQuarantined, st.State)
	assert.ErrorIs(t, st.LastError, ErrExitIPChanged)
	assert.Equal(t, "127.0.0.137", st.ExitIP.String())
	assert.Equal(t, StateHealthy, p.Upstreams()[1].State(), "a provider template changes exits by design")

	pr.ProbeAll(context.Background())
	assert.Equal(t, StateQuarantined, u.State(), "a working probe does not end this quarantine")
	clock.Advance(DefaultQuarantine)
	pr.ProbeAll(context.Background())
	assert.Equal(t, StateHealthy, u.State(), "its period does, and the new exit is pinned")
}

func TestJudgeDownFallsBackToConnectProbe(t *testing.T) {
	judgeURL := startTestJudge(t)
	px := startHTTPProxy(t, "127.0.0.140", proxyOpts{})
	p := newTestPool(t, Config{}, "http://"+px.addr)
	dead := "http://" + testnet.RefusingAddr(t, "127.0.0.1") + "/"
	pr := newTestProber(t, p, ProberConfig{Judge: dead, Timeout: 5 * time.Second})
	r := pr.ProbeAll(context.Background())[0]
	assert.NoError(t, r.Err, "with the judge down, upstreams are not blamed")
	assert.False(t, r.ExitIP.IsValid())
	assert.Equal(t, int64(0), px.connects.Load(), "a TCP connect only")

	pr = newTestProber(t, p, ProberConfig{Judge: judgeURL})
	r = pr.ProbeAll(context.Background())[0]
	require.NoError(t, r.Err)
	assert.Equal(t, "127.0.0.140", r.ExitIP.String())
}

func TestClassifyAnonymity(t *testing.T) {
	self := []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")}
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	cases := []struct {
		name string
		rep  JudgeReport
		self []netip.Addr
		want Anonymity
	}{
		{"elite", JudgeReport{IP: "203.0.113.1", Headers: h("Accept", "*/*")}, self, AnonymityElite},
		{"exit is us", JudgeReport{IP: "198.51.100.7"}, self, AnonymityTransparent},
		{"mapped exit is us", JudgeReport{IP: "::ffff:198.51.100.7"}, self, AnonymityTransparent},
		{"xff list", JudgeReport{IP: "203.0.113.1", Headers: h("X-Forwarded-For", "10.0.0.1, 198.51.100.7")}, self, AnonymityTransparent},
		{"forwarded v6", JudgeReport{IP: "203.0.113.1", Headers: h("Forwarded", `for="[2001:db8::7]:4711";proto=http`)}, self, AnonymityTransparent},
		{"forwarded v4 port", JudgeReport{IP: "203.0.113.1", Headers: h("Forwarded", "for=198.51.100.7:99")}, self, AnonymityTransparent},
		{"lower-case name", JudgeReport{IP: "203.0.113.1", Headers: http.Header{"x-real-ip": {"198.51.100.7"}}}, self, AnonymityTransparent},
		{"xff other address", JudgeReport{IP: "203.0.113.1", Headers: h("X-Forwarded-For", "192.0.2.5")}, self, AnonymityAnonymous},
		{"via", JudgeReport{IP: "203.0.113.1", Headers: h("Via", "1.1 proxy")}, self, AnonymityAnonymous},
		{"xff unknown", JudgeReport{IP: "203.0.113.1", Headers: h("X-Forwarded-For", "unknown")}, self, AnonymityAnonymous},
		{"self unknown, foreign address", JudgeReport{IP: "203.0.113.1", Headers: h("X-Forwarded-For", "192.0.2.5")}, nil, AnonymityTransparent},
		{"self unknown, exit echoed", JudgeReport{IP: "203.0.113.1", Headers: h("X-Forwarded-For", "203.0.113.1")}, nil, AnonymityAnonymous},
		{"no ip", JudgeReport{}, self, AnonymityUnknown},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, ClassifyAnonymity(c.rep, c.self), c.name)
	}
	for _, a := range []Anonymity{AnonymityUnknown, AnonymityTransparent, AnonymityAnonymous, AnonymityElite} {
		b, err := a.MarshalText()
		require.NoError(t, err)
		var back Anonymity
		require.NoError(t, back.UnmarshalText(b))
		assert.Equal(t, a, back)
	}
	_, err := ParseAnonymity("stealth")
	assert.ErrorIs(t, err, ErrBadAnonymity)
	assert.Less(t, AnonymityTransparent, AnonymityElite, "ordered by anonymity")
}

func TestLeakerQuarantinedForFailuresStaysOut(t *testing.T) {
	judgeURL := startTestJudge(t)
	tr := startHTTPProxy(t, "127.0.0.141", proxyOpts{forwardHeaders: transparent})
	p := newTestPool(t, Config{}, "http://"+tr.addr)
	pr := newTestProber(t, p, ProberConfig{Judge: judgeURL, RequireAnonymity: AnonymityAnonymous})
	u := p.Upstreams()[0]
	u.consec.Store(p.threshold)
	p.charge(u, nil)
	r := pr.ProbeAll(context.Background())[0]
	require.NoError(t, r.Err, "it answers")
	assert.Equal(t, AnonymityTransparent, r.Anonymity)
	assert.Equal(t, StateQuarantined, u.State(), "but a leaking upstream is not released")
	assert.ErrorIs(t, u.Stats().LastError, ErrLeak)
}
