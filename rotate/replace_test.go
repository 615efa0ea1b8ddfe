package rotate

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

func TestReplaceKeepsIdentityAndCounters(t *testing.T) {
	p := newTestPool(t, Config{}, "http://a.example:1", "http://u:p@b.example:2", "direct")
	old := p.Upstreams()
	old[1].recordSuccess(time.Millisecond, true)

	st := p.Replace(mustUpstreams(t, "direct", "B.EXAMPLE:2:u:p", "http://c.example:3", "direct"))
	assert.Equal(t, ReplaceStats{Added: 1, Removed: 1, Kept: 2, Duplicates: 1}, st)
	assert.True(t, st.Changed())
	now := p.Upstreams()
	require.Len(t, now, 3)
	assert.Same(t, old[2], now[0], "direct kept")
	assert.Same(t, old[1], now[1], "same entry written differently is the same upstream")
	assert.Equal(t, uint64(1), now[1].Stats().Successes, "counters survive the reload")
	assert.Equal(t, "http://c.example:3", now[2].Label())

	st = p.Replace(mustUpstreams(t, "direct", "http://u:p@b.example:2", "http://c.example:3"))
	assert.False(t, st.Changed())
	assert.Equal(t, now, p.Upstreams())

	p.Replace(mustUpstreams(t, "http://u:other@b.example:2"))
	assert.NotSame(t, old[1], p.Upstreams()[0], "new credentials make a new upstream")
}

func TestReplaceUnderConcurrentDials(t *testing.T) {
	origin := startEchoOrigin(t)
	a := startHTTPProxy(t, "127.0.0.91", proxyOpts{})
	b := startSOCKSProxy(t, "127.0.0.92", proxyOpts{})
	c := startHTTPProxy(t, "127.0.0.93", proxyOpts{})
	p := newTestPool(t, Config{ConnectTimeout: time.Minute}, "http://"+a.addr, "socks5://"+b.addr)
	bBefore := p.Upstreams()[1]

	const clients, perClient = 200, 10
	var done, failures atomic.Int64
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perClient {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				out, err := p.Dial(ctx, &dial.Request{Target: origin.addr})
				cancel()
				if err != nil {
					failures.Add(1)
					t.Errorf("dial: %v", err)
					continue
				}
				src := readFrom(t, out.Conn)
				out.Done(false)
				mu.Lock()
				counts[src]++
				mu.Unlock()
				done.Add(1)
			}
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); done.Load() < clients*perClient/4 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	doneAtReplace := done.Load()
	// Drop a, keep b (a fresh parse of the same entry), add c.
	st := p.Replace(mustUpstreams(t, "socks5://"+b.addr, "http://"+c.addr))
	wg.Wait()

	assert.Equal(t, ReplaceStats{Added: 1, Removed: 1, Kept: 1}, st)
	assert.Zero(t, failures.Load())
	assert.Less(t, doneAtReplace, int64(clients*perClient), "the reload happened mid-run")
	mu.Lock()
	defer mu.Unlock()
	assert.Positive(t, counts["127.0.0.93"], "the new upstream receives traffic")
	assert.Positive(t, counts["127.0.0.91"], "the dropped one served before the reload")
	assert.Same(t, bBefore, p.Upstreams()[0])
	assert.Equal(t, uint64(counts["127.0.0.92"]), bBefore.Stats().Successes, "one counter across the reload")
}
