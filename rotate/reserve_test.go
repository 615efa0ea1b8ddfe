package rotate

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
)

// TestReservationInMemory: with the default store, reservations hold within
// the process; the raw connection is handed out (splice stays possible) and
// Done both releases the exit and closes the connection.
func TestReservationInMemory(t *testing.T) {
	origin := startEchoOrigin(t)
	_, port, _ := net.SplitHostPort(origin.addr)
	list, ips := directList(t, 191, 2)
	clock := newFakeClock()
	r := newTestRouter(t, RouterConfig{
		Pools: map[string]PoolSpec{"p": {Upstreams: []string{list}}},
		Rules: []Rule{{Host: "localhost", Pool: "p", Reserve: true}, {Host: "*", Pool: "p"}},
		Pool:  Config{MaxQueueWait: 5 * time.Second, Clock: clock},
	})
	shop := &dial.Request{Target: "localhost:" + port}
	out1, err := r.Dial(context.Background(), shop)
	require.NoError(t, err)
	_, raw := out1.Conn.(*net.TCPConn)
	assert.True(t, raw, "the connection is not wrapped: %T", out1.Conn)
	out2, err := r.Dial(context.Background(), shop)
	require.NoError(t, err)
	assert.ElementsMatch(t, ips, []string{readFrom(t, out1.Conn), readFrom(t, out2.Conn)})

	// A third waits, on the clock, until one is released.
	got := make(chan *dial.Outbound, 1)
	go func() {
		out, err := r.Dial(context.Background(), shop)
		assert.NoError(t, err)
		got <- out
	}()
	clock.waitSleepers(t, 1)
	select {
	case <-got:
		t.Fatal("did not wait for a free exit")
	default:
	}
	out1.Done(false)
	_, err = out1.Conn.Write([]byte("x"))
	assert.Error(t, err, "Done closed the connection")
	for i := 0; ; i++ {
		clock.Advance(reservePollMax)
		select {
		case out3 := <-got:
			require.NotNil(t, out3)
			out3.Done(false)
		case <-time.After(10 * time.Millisecond):
			require.Less(t, i, 1000, "waiter never served")
			continue
		}
		break
	}

	// Past the maximum wait: 503.
	out4, err := r.Dial(context.Background(), shop)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() {
		_, err := r.Dial(context.Background(), shop)
		errc <- err
	}()
	for i := 0; ; i++ {
		clock.Advance(time.Second)
		select {
		case err := <-errc:
			require.ErrorIs(t, err, ErrReserved)
			assert.Equal(t, dial.KindNoUpstream, dial.Classify(err))
		case <-time.After(10 * time.Millisecond):
			require.Less(t, i, 1000, "waiter never gave up")
			continue
		}
		break
	}
	out4.Done(false)
	out2.Done(false)
	assert.Empty(t, r.Pool("p").leases.list(), "every reservation released")
}

// TestReservationChainsRelease: a forward connection's own Release (the
// keep-alive pool) still runs after the reservation's.
func TestReservationChainsRelease(t *testing.T) {
	st := NewMemoryStore(nil)
	var set leaseSet
	l := &lease{store: st, key: "k", owner: "o", ctx: context.Background(), set: &set}
	i, _, err := st.Acquire(context.Background(), []string{"k"}, "o", time.Hour)
	require.NoError(t, err)
	require.Equal(t, 0, i)
	set.add(l)
	a, b := testnet.TCPPair(t)
	defer b.Close()
	var kept bool
	out := &dial.Outbound{Conn: a, Release: func(o *dial.Outbound, reusable bool) { kept = reusable }}
	l.attach(out)
	out.Done(true)
	assert.True(t, kept, "the previous Release got the connection back")
	i, _, err = st.Acquire(context.Background(), []string{"k"}, "other", time.Hour)
	require.NoError(t, err)
	assert.Equal(t, 0, i, "released")
	assert.Empty(t, set.list())
	l.release() // twice is harmless
	_ = a.Close()
}

// TestSharedMinInterval: a min-interval slot taken on one instance holds on
// the other.
func TestSharedMinInterval(t *testing.T) {
	srv := startRedis(t)
	origin := startEchoOrigin(t)
	_, port, _ := net.SplitHostPort(origin.addr)
	list, ips := directList(t, 193, 2)
	cfg := RouterConfig{
		Pools: map[string]PoolSpec{"p": {Upstreams: []string{list}}},
		Rules: []Rule{{Host: "localhost", Pool: "p", MinInterval: time.Hour}, {Host: "*", Pool: "p"}},
		Pool:  Config{MaxQueueWait: 100 * time.Millisecond},
	}
	a, b := twoInstances(t, srv, cfg)
	shop := &dial.Request{Target: "localhost:" + port}
	assert.ElementsMatch(t, ips, []string{via(t, a.r, shop), via(t, b.r, shop)})
	for _, in := range []*instance{a, b} {
		_, err := in.r.Dial(context.Background(), shop)
		require.ErrorIs(t, err, ErrQueueWait, "both exits were used for this host within the interval, on either instance")
	}
	via(t, a.r, &dial.Request{Target: "127.0.0.1:" + port}) // other hosts are free

	// A short interval: the next request waits for the soonest slot.
	short := cfg
	short.Rules = []Rule{{Host: "*", Pool: "p", MinInterval: 300 * time.Millisecond}}
	short.Pool.MaxQueueWait = 5 * time.Second
	c := startInstance(t, "C", newTestRedisStore(t, srv, "other", nil), short)
	d := startInstance(t, "D", newTestRedisStore(t, srv, "other", nil), short)
	var seen []string
	for _, in := range []*instance{c, d, c, d} {
		seen = append(seen, via(t, in.r, shop))
	}
	assert.ElementsMatch(t, append(ips, ips...), seen, "each exit once per interval, waiting when both are busy")
}
