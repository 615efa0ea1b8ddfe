package rotate

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

// storePair returns two handles on one store, as two instances would hold
// (the memory store: the same one twice).
type storePair func(t *testing.T) (a, b Store)

// TestStoreContract runs one suite against every implementation.
func TestStoreContract(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		storeContract(t, func(t *testing.T) (Store, Store) {
			m := NewMemoryStore(nil)
			t.Cleanup(func() { _ = m.Close() })
			return m, m
		})
	})
	t.Run("redis", func(t *testing.T) {
		srv := startRedis(t)
		n := 0
		storeContract(t, func(t *testing.T) (Store, Store) {
			n++
			prefix := fmt.Sprintf("contract%d", n)
			return newTestRedisStore(t, srv, prefix, nil), newTestRedisStore(t, srv, prefix, nil)
		})
	})
}

// onBoth runs f for workers 0 to n-1 at once, the even ones on a and the
// odd ones on b, and waits for them.
func onBoth(a, b Store, n int, f func(w int, s Store)) {
	var wg sync.WaitGroup
	for w := range n {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(w, s)
		}()
	}
	wg.Wait()
}

func storeContract(t *testing.T, pair storePair) {
	ctx := context.Background()
	waitGone := func(t *testing.T, s Store, key string) {
		waitFor(t, func() bool {
			_, err := s.Get(ctx, key)
			return isNotFound(err)
		}, "%s to expire", key)
	}

	t.Run("KV", func(t *testing.T) {
		a, b := pair(t)
		_, err := a.Get(ctx, "k")
		require.ErrorIs(t, err, ErrNotFound)
		require.NoError(t, a.Set(ctx, "k", []byte("v1"), time.Hour))
		got, err := b.Get(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, []byte("v1"), got)
		got[0] = 'X' // the caller's copy
		require.NoError(t, b.Set(ctx, "k", []byte("v2"), time.Hour))
		got, err = a.Get(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, []byte("v2"), got, "overwritten")
		require.NoError(t, a.Delete(ctx, "k"))
		_, err = b.Get(ctx, "k")
		require.ErrorIs(t, err, ErrNotFound)
		require.NoError(t, a.Delete(ctx, "never-set"), "deleting a missing key is fine")

		require.ErrorIs(t, a.Set(ctx, "k", []byte("v"), 0), ErrBadTTL, "every key expires")
		require.ErrorIs(t, a.Set(ctx, "k", make([]byte, MaxValueSize+1), time.Hour), ErrValueTooLarge)
		big := bytes.Repeat([]byte{0, 0xff, '\n'}, MaxValueSize/3)
		require.NoError(t, a.Set(ctx, "big", big, time.Hour), "binary values up to the bound")
		got, err = b.Get(ctx, "big")
		require.NoError(t, err)
		assert.Equal(t, big, got)

		require.NoError(t, a.Set(ctx, "short", []byte("v"), 100*time.Millisecond))
		waitGone(t, b, "short")
	})

	t.Run("GetMany", func(t *testing.T) {
		a, b := pair(t)
		keys := make([]string, 600) // more than one MGET chunk
		for i := range keys {
			keys[i] = fmt.Sprintf("m%d", i)
			if i%3 == 0 {
				require.NoError(t, a.Set(ctx, keys[i], []byte(keys[i]), time.Hour))
			}
		}
		vals, err := b.GetMany(ctx, keys)
		require.NoError(t, err)
		require.Len(t, vals, len(keys))
		for i, v := range vals {
			if i%3 == 0 {
				assert.Equal(t, []byte(keys[i]), v, keys[i])
			} else {
				assert.Nil(t, v, keys[i])
			}
		}
		vals, err = b.GetMany(ctx, nil)
		require.NoError(t, err)
		assert.Empty(t, vals)
	})

	t.Run("Incr", func(t *testing.T) {
		a, b := pair(t)
		n, err := a.Incr(ctx, "c", 5, time.Hour)
		require.NoError(t, err)
		assert.Equal(t, int64(5), n, "a missing counter starts at zero")
		n, err = b.Incr(ctx, "c", 3, time.Hour)
		require.NoError(t, err)
		assert.Equal(t, int64(8), n)
		_, err = a.Incr(ctx, "c", 1, 0)
		require.ErrorIs(t, err, ErrBadTTL)

		// Concurrent increments from two instances never hand out the same
		// value: that is what makes cursor blocks disjoint.
		var mu sync.Mutex
		seen := map[int64]bool{}
		onBoth(a, b, 20, func(_ int, s Store) {
			for range 10 {
				v, err := s.Incr(ctx, "c2", 1, time.Hour)
				assert.NoError(t, err)
				mu.Lock()
				assert.False(t, seen[v], "value %d handed out twice", v)
				seen[v] = true
				mu.Unlock()
			}
		})
		assert.Len(t, seen, 200)

		_, err = a.Incr(ctx, "gone", 1, 100*time.Millisecond)
		require.NoError(t, err)
		waitGone(t, b, "gone")
		n, err = a.Incr(ctx, "gone", 1, time.Hour)
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "an expired counter starts again")
	})

	t.Run("Leases", func(t *testing.T) {
		a, b := pair(t)
		keys := []string{"l1", "l2", "l3"}
		i, _, err := a.Acquire(ctx, keys, "o1", time.Hour)
		require.NoError(t, err)
		assert.Equal(t, 0, i, "the first free key, in order")
		i, _, err = b.Acquire(ctx, keys, "o2", time.Hour)
		require.NoError(t, err)
		assert.Equal(t, 1, i, "held keys are skipped")
		i, _, err = a.Acquire(ctx, keys[:2], "o3", time.Hour)
		require.NoError(t, err)
		assert.Equal(t, -1, i, "all held")
		i, wait, err := a.Acquire(ctx, []string{"l1", "l2"}, "o3", time.Hour)
		require.NoError(t, err)
		assert.Equal(t, -1, i)
		assert.True(t, wait > 0 && wait <= time.Hour, "time until the soonest expiry: %v", wait)
		i, _, err = a.Acquire(ctx, nil, "o3", time.Hour)
		require.NoError(t, err)
		assert.Equal(t, -1, i, "no keys, nothing taken")
		_, _, err = a.Acquire(ctx, keys, "o3", 0)
		require.ErrorIs(t, err, ErrBadTTL)

		// Compare-and-delete: only the owner releases.
		require.NoError(t, b.Release(ctx, "l1", "o2"))
		i, _, err = b.Acquire(ctx, []string{"l1"}, "o2", time.Hour)
		require.NoError(t, err)
		assert.Equal(t, -1, i, "another owner's release left l1 held")
		require.NoError(t, b.Release(ctx, "l1", "o1"))
		i, _, err = b.Acquire(ctx, []string{"l1"}, "o2", time.Hour)
		require.NoError(t, err)
		assert.Equal(t, 0, i, "released by its owner, taken by another")

		// Renew extends one's own hold, retakes a free key, and never steals.
		ok, err := a.Renew(ctx, "l1", "o1", time.Hour)
		require.NoError(t, err)
		assert.False(t, ok, "o2 holds l1 now")
		ok, err = a.Renew(ctx, "l9", "o1", time.Hour)
		require.NoError(t, err)
		assert.True(t, ok, "a free key is taken again")
		i, _, err = b.Acquire(ctx, []string{"l9"}, "o2", time.Hour)
		require.NoError(t, err)
		assert.Equal(t, -1, i)

		// Expiry frees a lease whose owner stopped renewing; renewing keeps it.
		i, _, err = a.Acquire(ctx, []string{"e1"}, "o1", 150*time.Millisecond)
		require.NoError(t, err)
		require.Equal(t, 0, i)
		i, _, err = a.Acquire(ctx, []string{"e2"}, "o1", 150*time.Millisecond)
		require.NoError(t, err)
		require.Equal(t, 0, i)
		for range 4 {
			time.Sleep(60 * time.Millisecond)
			ok, err := a.Renew(ctx, "e2", "o1", 150*time.Millisecond)
			require.NoError(t, err)
			require.True(t, ok)
		}
		waitGone(t, b, "e1")
		i, _, err = b.Acquire(ctx, []string{"e2", "e1"}, "o2", time.Hour)
		require.NoError(t, err)
		assert.Equal(t, 1, i, "the renewed lease is still held, the other expired")

		// One winner among many contenders on two instances.
		var wins sync.Map
		onBoth(a, b, 20, func(w int, s Store) {
			i, _, err := s.Acquire(ctx, []string{"race"}, fmt.Sprint("w", w), time.Hour)
			assert.NoError(t, err)
			if i == 0 {
				wins.Store(w, true)
			}
		})
		n := 0
		wins.Range(func(any, any) bool { n++; return true })
		assert.Equal(t, 1, n, "exactly one contender holds the key")
	})

	t.Run("PubSub", func(t *testing.T) {
		a, b := pair(t)
		got := make(chan []byte, 16)
		stop := testnet.Go(t, "Subscribe", func(ctx context.Context) error {
			return a.Subscribe(ctx, "events", func(msg []byte) { got <- msg })
		})
		next := func() []byte {
			select {
			case m := <-got:
				return m
			case <-time.After(10 * time.Second):
				t.Fatal("no message")
				return nil
			}
		}
		assert.Nil(t, next(), "established: the subscriber is told to synchronise")
		require.NoError(t, b.Publish(ctx, "other", []byte("not for us")))
		for _, m := range []string{"one", "two", "three"} {
			require.NoError(t, b.Publish(ctx, "events", []byte(m)))
		}
		assert.Equal(t, []byte("one"), next())
		assert.Equal(t, []byte("two"), next(), "in order")
		assert.Equal(t, []byte("three"), next())
		stop()
		assert.Empty(t, got, "nothing else was delivered")
	})

	t.Run("Health", func(t *testing.T) {
		a, _ := pair(t)
		require.NoError(t, a.Set(ctx, "h", []byte("v"), time.Hour))
		h := a.Health()
		assert.False(t, h.Degraded)
		assert.Contains(t, []string{"memory", "redis"}, h.Backend)
		assert.Equal(t, h.Backend == "redis", h.Shared)
	})
}

// FuzzHealthRecord: what parses encodes back to itself, and nothing panics.
func FuzzHealthRecord(f *testing.F) {
	for _, s := range []string{"0 0 0 0", "1735689600000000000 2 1735689000000000000 1", "-1 0 0 2", "1 2 3", "1 -2 3 0", "1 2 3 9", " 1  2 3 0 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, ok := parseHealthRecord(s)
		if !ok {
			return
		}
		r2, ok := parseHealthRecord(string(r.encode()))
		require.True(t, ok)
		require.Equal(t, r, r2)
		require.GreaterOrEqual(t, r.offences, 0)
		require.LessOrEqual(t, r.cause, causeExitIP)
	})
}
