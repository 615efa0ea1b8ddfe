package rotate

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestOpenStore(t *testing.T) {
	for _, spec := range []string{"", "memory", "MEMORY"} {
		st, err := OpenStore(spec, StoreOptions{})
		require.NoError(t, err, spec)
		assert.Equal(t, "memory", st.Health().Backend)
		require.NoError(t, st.Close())
	}
	st, err := OpenStore("redis://user:s3cret@127.0.0.1:1/2", StoreOptions{Prefix: "x"})
	require.NoError(t, err, "opening does not connect")
	h := st.Health()
	assert.Equal(t, "redis", h.Backend)
	assert.True(t, h.Shared)
	assert.Equal(t, "127.0.0.1:1", h.Addr)
	require.NoError(t, st.Close())
	st, err = OpenStore("rediss://127.0.0.1:1/0?timeout=1500ms&client_name=x", StoreOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1500*time.Millisecond, st.(*RedisStore).timeout, "the URL's timeout option")
	require.NoError(t, st.Close())

	for _, bad := range []string{"postgres://u:s3cret@h/db", "redis://u:s3cret@h:1/notadb", "file.txt", "redis://u:s3cret@h:1/0?timeout=-1s"} {
		_, err := OpenStore(bad, StoreOptions{})
		require.ErrorIs(t, err, ErrBadStore, bad)
		assert.NotContains(t, err.Error(), "s3cret", "errors never show the password")
	}
	_, err = OpenStore("redis://127.0.0.1:1/0", StoreOptions{Prefix: "has space"})
	require.ErrorIs(t, err, ErrBadStore)
	assert.NoError(t, ValidateStatePrefix("hopper-prod:eu"))
	assert.Error(t, ValidateStatePrefix(""))
}

func TestRedisStorePrefixesAndTTLs(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	a := newTestRedisStore(t, srv, "one", nil)
	b := newTestRedisStore(t, srv, "two", nil)
	require.NoError(t, a.Set(ctx, "k", []byte("a"), time.Hour))
	require.NoError(t, b.Set(ctx, "k", []byte("b"), time.Hour))
	got, err := a.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, []byte("a"), got, "prefixes keep deployments apart")
	_, err = a.Incr(ctx, "n", 1, time.Hour)
	require.NoError(t, err)
	_, _, err = a.Acquire(ctx, []string{"l"}, "o", time.Hour)
	require.NoError(t, err)
	c := srv.client(t)
	v, err := c.Get(ctx, "one:k").Result()
	require.NoError(t, err)
	assert.Equal(t, "a", v, "keys live under PREFIX:")
	assert.Equal(t, 4, requireAllKeysExpire(t, c))
}

// TestRedisStoreDownAndBack: a dead server degrades the store (logged
// once), calls then fail fast with ErrStoreUnavailable, the health check a
// subscriber runs heals it when the server returns, and the subscriber is
// told to resynchronise.
func TestRedisStoreDownAndBack(t *testing.T) {
	srv := startRedis(t)
	core, logs := observer.New(zapcore.InfoLevel)
	st := newTestRedisStore(t, srv, "h", zap.New(core))
	ctx := context.Background()
	syncs := resyncSignals(t, st, 64)
	waitSync := func(what string) {
		select {
		case <-syncs:
		case <-time.After(15 * time.Second):
			t.Fatalf("no resynchronisation signal %s", what)
		}
	}
	waitSync("at start")
	require.NoError(t, st.Set(ctx, "k", []byte("v"), time.Hour))

	for _, outage := range []struct {
		name       string
		down, back func()
	}{
		{"killed", srv.stop, func() { require.NoError(t, srv.start()) }},
		{"frozen", srv.pause, srv.resume},
	} {
		t.Run(outage.name, func(t *testing.T) {
			before := countLogs(logs, "shared state unreachable; serving from local state until it returns")
			outage.down()
			_, err := st.Get(ctx, "k")
			require.ErrorIs(t, err, ErrStoreUnavailable)
			for range 20 {
				_, err := st.Incr(ctx, "n", 1, time.Hour)
				require.ErrorIs(t, err, ErrStoreUnavailable)
			}
			h := st.Health()
			assert.True(t, h.Degraded)
			assert.Error(t, h.Err)
			assert.False(t, h.Since.IsZero())
			assert.Equal(t, before+1, countLogs(logs, "shared state unreachable; serving from local state until it returns"), "logged once")
			for len(syncs) > 0 {
				<-syncs
			}
			outage.back()
			waitFor(t, func() bool { return !st.Health().Degraded }, "the store to heal")
			waitSync("after the outage")
			require.NoError(t, st.Set(ctx, "k2", []byte("v"), time.Hour))
		})
	}
	assert.Equal(t, 2, countLogs(logs, "shared state reachable again; resynchronising"))
	assert.GreaterOrEqual(t, st.Health().Failures, uint64(2))
}

// TestRedisStoreDownAtStart: a store whose server is not up yet is
// degraded, not an error, and heals when the server starts.
func TestRedisStoreDownAtStart(t *testing.T) {
	srv := &redisServer{t: t, dir: t.TempDir(), port: freePort(t)}
	t.Cleanup(srv.stop)
	st := newTestRedisStore(t, srv, "late", nil)
	ctx := context.Background()
	syncs := resyncSignals(t, st, 8)
	_, err := st.Incr(ctx, "n", 1, time.Hour)
	require.ErrorIs(t, err, ErrStoreUnavailable)
	assert.True(t, st.Health().Degraded)
	require.NoError(t, srv.start())
	waitFor(t, func() bool { return !st.Health().Degraded }, "the store to heal once the server is up")
	select {
	case <-syncs:
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber was not told to synchronise")
	}
	n, err := st.Incr(ctx, "n", 1, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
}
