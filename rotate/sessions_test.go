package rotate

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

// fourProxies starts HTTP proxies on 127.0.0.141-144.
func fourProxies(t *testing.T) ([]*testProxy, []string) {
	var ps []*testProxy
	var entries []string
	for i := range 4 {
		px := startHTTPProxy(t, fmt.Sprintf("127.0.0.%d", 141+i), proxyOpts{})
		ps = append(ps, px)
		entries = append(entries, "http://"+px.addr)
	}
	return ps, entries
}

func TestStickySessionAndItsMove(t *testing.T) {
	origin := startEchoOrigin(t)
	proxies, entries := fourProxies(t)
	p := newTestPool(t, Config{}, entries...)
	sess := &dial.Request{Target: origin.addr, User: "alice", Session: "cart-1"}

	first, _ := dialSource(t, p, sess)
	rotated := make(map[string]bool)
	for range 9 {
		src, _ := dialSource(t, p, sess)
		assert.Equal(t, first, src, "the session keeps its exit")
		other, _ := dialSource(t, p, &dial.Request{Target: origin.addr, User: "alice"})
		rotated[other] = true
	}
	assert.Len(t, rotated, 4, "requests without the session keep rotating")
	src, _ := dialSource(t, p, &dial.Request{Target: origin.addr, User: "bob", Session: "cart-1"})
	_ = src // another account's session of the same name is another session
	assert.Equal(t, 2, p.sessions.len())

	// Its exit dies: the request still succeeds, elsewhere, and the session
	// stays there afterwards.
	var dead *testProxy
	for _, px := range proxies {
		if px.ip == first {
			dead = px
		}
	}
	dead.down.Store(true)
	moved, out := dialSource(t, p, sess)
	assert.NotEqual(t, first, moved)
	require.Len(t, out.Attempts, 2)
	assert.Error(t, out.Attempts[0].Err)
	for range 3 {
		src, out := dialSource(t, p, sess)
		assert.Equal(t, moved, src)
		assert.Len(t, out.Attempts, 1)
	}
	// Once the old exit recovers, the session stays where it moved.
	dead.down.Store(false)
	src, _ = dialSource(t, p, sess)
	assert.Equal(t, moved, src)
}

func TestStickySessionMovesOffQuarantinedUpstream(t *testing.T) {
	origin := startEchoOrigin(t)
	_, entries := fourProxies(t)
	p := newTestPool(t, Config{}, entries...)
	sess := &dial.Request{Target: origin.addr, Session: "s"}
	first, out := dialSource(t, p, sess)
	var u *Upstream
	for _, v := range p.Upstreams() {
		if v.Label() == out.Upstream {
			u = v
		}
	}
	u.consec.Store(p.threshold)
	p.charge(u, nil)
	next, out := dialSource(t, p, sess)
	assert.NotEqual(t, first, next, "a quarantined exit is left without a failed attempt")
	assert.Len(t, out.Attempts, 1)
}

func TestEightSessionsSpreadOverFourUpstreams(t *testing.T) {
	origin := startEchoOrigin(t)
	_, entries := fourProxies(t)
	p := newTestPool(t, Config{}, entries...)
	counts := make(map[string]int)
	exits := make(map[string]string)
	for i := range 8 {
		id := fmt.Sprint("s", i)
		src, _ := dialSource(t, p, &dial.Request{Target: origin.addr, Session: id})
		counts[src]++
		exits[id] = src
	}
	assert.Len(t, counts, 4)
	for ip, n := range counts {
		assert.Equal(t, 2, n, ip)
	}
	for i := 7; i >= 0; i-- {
		id := fmt.Sprint("s", i)
		src, _ := dialSource(t, p, &dial.Request{Target: origin.addr, Session: id})
		assert.Equal(t, exits[id], src, id)
	}
}

func TestSessionTTLAndCap(t *testing.T) {
	clock := newFakeClock()
	s := newSessions(10*time.Minute, 3)
	ups := upstreamsN(t, 2)
	k := func(id string) sessionKey { return sessionKey{id: id} }
	s.put(k("a"), ups[0], 0, clock.Now())
	clock.Advance(9 * time.Minute)
	u, _, ok := s.get(k("a"), clock.Now())
	require.True(t, ok)
	assert.Same(t, ups[0], u)
	s.put(k("a"), ups[1], 1, clock.Now()) // used again: its TTL restarts
	clock.Advance(9 * time.Minute)
	u, gen, ok := s.get(k("a"), clock.Now())
	require.True(t, ok, "TTL counts from the last use")
	assert.Same(t, ups[1], u)
	assert.Equal(t, uint32(1), gen)
	clock.Advance(time.Minute)
	_, _, ok = s.get(k("a"), clock.Now())
	assert.False(t, ok, "forgotten 10m after its last use")
	assert.Zero(t, s.len(), "and dropped from the table")

	for _, id := range []string{"1", "2", "3"} {
		s.put(k(id), ups[0], 0, clock.Now())
		clock.Advance(time.Second)
	}
	_, _, _ = s.get(k("1"), clock.Now()) // a lookup alone does not refresh
	s.put(k("4"), ups[0], 0, clock.Now())
	assert.Equal(t, 3, s.len(), "capped")
	_, _, ok = s.get(k("1"), clock.Now())
	assert.False(t, ok, "the least recently used goes first")
	for _, id := range []string{"2", "3", "4"} {
		_, _, ok = s.get(k(id), clock.Now())
		assert.True(t, ok, id)
	}
	s.forget(k("2"))
	assert.Equal(t, 2, s.len())
}

func TestSessionTTLThroughPool(t *testing.T) {
	origin := startEchoOrigin(t)
	_, entries := fourProxies(t)
	clock := newFakeClock()
	p := newTestPool(t, Config{Clock: clock, SessionTTL: time.Minute}, entries...)
	sess := &dial.Request{Target: origin.addr, Session: "x"}
	first, _ := dialSource(t, p, sess)
	clock.Advance(59 * time.Second)
	src, _ := dialSource(t, p, sess)
	assert.Equal(t, first, src)
	clock.Advance(time.Minute)
	_, _, ok := p.sessions.get(sessionKey{id: "x"}, clock.Now())
	assert.False(t, ok, "expired a minute after its last use")

	off := newTestPool(t, Config{SessionTTL: -1}, entries...)
	assert.Nil(t, off.sessions)
	_, err := off.Dial(context.Background(), sess)
	assert.NoError(t, err)
}

// TestTemplateSessionsAtAFakeGateway checks the usernames a provider gateway
// receives: a fresh session per connection, the same for a sticky session,
// a new one when the session moves, and the country filled in.
func TestTemplateSessionsAtAFakeGateway(t *testing.T) {
	origin := startEchoOrigin(t)
	auth := func(user, pass string) bool { return pass == "pw" }
	gw1 := startHTTPProxy(t, "127.0.0.145", proxyOpts{auth: auth})
	gw2 := startSOCKSProxy(t, "127.0.0.146", proxyOpts{auth: auth})
	p := newTestPool(t, Config{},
		"http://brd-customer-c1-zone-z1-country-{country}-session-{session}:pw@"+gw1.addr,
		"socks5://acct-res-{country|any}-sid-{session-digits}:pw@"+gw2.addr)

	for range 4 { // two through each gateway
		dialSource(t, p, &dial.Request{Target: origin.addr})
	}
	u1 := gw1.seenUsers()
	require.Len(t, u1, 2)
	for _, u := range u1 {
		assert.Regexp(t, `^brd-customer-c1-zone-z1-session-[a-z0-9]{12}$`, u, "no country: the key goes too")
	}
	assert.NotEqual(t, u1[0], u1[1], "a fresh session per connection")
	u2 := gw2.seenUsers()
	require.Len(t, u2, 2)
	for _, u := range u2 {
		assert.Regexp(t, `^acct-res-any-sid-[1-9][0-9]{8}$`, u, "the default country, a numeric session")
	}
	assert.NotEqual(t, u2[0], u2[1])

	sess := &dial.Request{Target: origin.addr, User: "alice", Session: "basket", Country: "DE"}
	first, _ := dialSource(t, p, sess)
	for range 4 {
		src, _ := dialSource(t, p, sess)
		assert.Equal(t, first, src)
	}
	gw, seen := gw1, gw1.seenUsers()[2:]
	pattern := `^brd-customer-c1-zone-z1-country-de-session-([a-z0-9]{12})$`
	if first == gw2.ip {
		gw, seen, pattern = gw2, gw2.seenUsers()[2:], `^acct-res-de-sid-([0-9]{9})$`
	}
	require.Len(t, seen, 5)
	for _, u := range seen {
		assert.Equal(t, seen[0], u, "the same provider session for the sticky session")
		assert.Regexp(t, pattern, u)
	}

	gw.down.Store(true) // the session's gateway fails: it moves, with a new provider session
	moved, _ := dialSource(t, p, sess)
	assert.NotEqual(t, first, moved)
	other := gw1
	if gw == gw1 {
		other = gw2
	}
	users := other.seenUsers()
	last := users[len(users)-1]
	assert.Regexp(t, `country-de|res-de`, last)
	id := regexp.MustCompile(`(session|sid)-([a-z0-9]+)$`).FindStringSubmatch(last)
	require.NotNil(t, id)
	assert.NotContains(t, seen[0], id[2], "a new provider session after the move")
}
