package rotate

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

// TestSharedSurvivesRedisOutage: traffic through two instances never fails
// while Redis is killed, restarted empty, frozen and thawed; both report
// the degraded state meanwhile and share state again afterwards.
func TestSharedSurvivesRedisOutage(t *testing.T) {
	srv := startRedis(t)
	origin := startEchoOrigin(t)
	_, port, _ := net.SplitHostPort(origin.addr)
	list, _ := directList(t, 185, 4)
	cfg := RouterConfig{
		Pools: map[string]PoolSpec{"p": {Upstreams: []string{list}}},
		Rules: []Rule{{Host: "localhost", Pool: "p", Reserve: true}, {Host: "*", Pool: "p"}},
		Pool:  Config{MaxQueueWait: 5 * time.Second},
	}
	a, b := twoInstances(t, srv, cfg)

	ctx, stop := context.WithCancel(context.Background())
	errs := make(chan error, 1000)
	dials := make(chan struct{}, 100000)
	var done sync.WaitGroup
	for w := range 4 {
		done.Add(1)
		go func() {
			defer done.Done()
			for i := 0; ctx.Err() == nil; i++ {
				in := a
				if (w+i)%2 == 1 {
					in = b
				}
				req := &dial.Request{Target: "127.0.0.1:" + port}
				switch i % 3 {
				case 1:
					req.Target = "localhost:" + port
				case 2:
					req.Session = fmt.Sprintf("s%d", w)
				}
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				out, err := in.r.Dial(dctx, req)
				cancel()
				if err == nil {
					_ = out.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
					buf := make([]byte, 32)
					_, err = out.Conn.Read(buf)
					out.Done(false)
				}
				if err != nil && ctx.Err() == nil {
					errs <- fmt.Errorf("%s dial %d: %w", in.name, i, err)
				}
				dials <- struct{}{}
			}
		}()
	}
	traffic := func(n int) { // wait for n more dials
		for range n {
			select {
			case <-dials:
			case <-time.After(20 * time.Second):
				t.Fatal("traffic stalled")
			}
		}
	}
	degraded := func(want bool) func() bool {
		return func() bool { return a.r.StateHealth().Degraded == want && b.r.StateHealth().Degraded == want }
	}

	traffic(50)
	srv.stop()
	traffic(200)
	waitFor(t, degraded(true), "both instances to report the store degraded")
	h := a.r.StateHealth()
	assert.True(t, h.Shared)
	assert.Error(t, h.Err)
	traffic(100)
	srv.restart()
	waitFor(t, degraded(false), "both instances to recover")
	traffic(100)
	srv.pause()
	traffic(100)
	waitFor(t, degraded(true), "a frozen server degrades the store too")
	srv.resume()
	waitFor(t, degraded(false), "both instances to recover from the freeze")
	traffic(100)
	stop()
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// State is shared again: a quarantine and a session travel.
	ua, ub := a.r.Pool("p").Upstreams()[2], b.r.Pool("p").Upstreams()[2]
	a.r.Pool("p").quarantine(ua, causeFailures, nil)
	waitFor(t, func() bool { return ub.State() == StateQuarantined }, "B to honour A's quarantine after the outage")
	sess := &dial.Request{Target: origin.addr, Session: "after"}
	exit := via(t, b.r, sess)
	assert.Equal(t, exit, via(t, a.r, sess))
	n, err := srv.client(t).Exists(context.Background(), "hopper:pool:p:cursor").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the rotation counts in the store again")
	requireAllKeysExpire(t, srv.client(t))
}
