package rotate

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// TestRedisListSource: a pool loads its list from a Redis key and reloads
// when the key's channel says so; a missing key keeps the pool.
func TestRedisListSource(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "upstreams", "direct://127.0.0.195\n# comment\nnot a valid line\n", 0).Err())
	src := "redis://" + srv.addr() + "/0?key=upstreams"
	r, err := NewRouter(RouterConfig{
		Pools:  map[string]PoolSpec{"p": {Upstreams: []string{src}}},
		Pool:   Config{Logger: zaptest.NewLogger(t)},
		Prober: ProberConfig{Interval: -1},
	})
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, r.Reload(ctx), "a bad line is skipped, not fatal")
	require.Equal(t, []string{"direct@127.0.0.195"}, labels(r.Pool("p").Upstreams()))

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool {
		n, err := c.PubSubNumSub(ctx, "upstreams").Result()
		return err == nil && n["upstreams"] > 0
	}, "the updater to subscribe")
	require.NoError(t, c.Set(ctx, "upstreams", "direct://127.0.0.195\ndirect://127.0.0.196\n", 0).Err())
	require.NoError(t, c.Publish(ctx, "upstreams", "reload").Err())
	waitFor(t, func() bool { return r.Pool("p").Len() == 2 }, "a reload on the notification")

	require.NoError(t, c.Del(ctx, "upstreams").Err())
	err = r.Reload(ctx)
	require.ErrorIs(t, err, ErrNotFound)
	assert.Equal(t, 2, r.Pool("p").Len(), "a missing list keeps the pool")
	assert.NotContains(t, err.Error(), "key=", "the label hides the query")

	_, err = NewRouter(RouterConfig{Pools: map[string]PoolSpec{"p": {Upstreams: []string{"redis://" + srv.addr() + "/0"}}}})
	require.ErrorIs(t, err, ErrBadSource, "a source without key=")
	assert.Equal(t, "redis://h:1/0?…", SourceLabel("redis://u:s3cret@h:1/0?key=x"))
	assert.False(t, strings.Contains(SourceLabel("rediss://u:s3cret@h:1/0?key=x"), "s3cret"))
}
