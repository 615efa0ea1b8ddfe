package rotate

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is a Clock that moves only when told to.
type fakeClock struct {
	mu       sync.Mutex
	now      time.Time
	sleepers map[*fakeSleeper]struct{}
}

type fakeSleeper struct {
	until time.Time
	wake  chan struct{}
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), sleepers: make(map[*fakeSleeper]struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	c.mu.Lock()
	s := &fakeSleeper{until: c.now.Add(d), wake: make(chan struct{})}
	c.sleepers[s] = struct{}{}
	c.mu.Unlock()
	select {
	case <-s.wake:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.sleepers, s)
		c.mu.Unlock()
		return ctx.Err()
	}
}

// Advance moves the clock and wakes the sleepers whose time has come.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for s := range c.sleepers {
		if !s.until.After(c.now) {
			close(s.wake)
			delete(c.sleepers, s)
		}
	}
}

func (c *fakeClock) sleeping() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sleepers)
}

// waitSleepers waits (bounded) until n goroutines sleep on the clock.
func (c *fakeClock) waitSleepers(t testing.TB, n int) {
	t.Helper()
	waitFor(t, func() bool { return c.sleeping() >= n }, "%d sleepers on the fake clock", n)
}

// waitFor polls cond for up to 10s.
func waitFor(t testing.TB, cond func() bool, msg string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			require.Failf(t, "timed out waiting", msg, args...)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSystemClockSleep(t *testing.T) {
	var c SystemClock
	assert.NoError(t, c.Sleep(context.Background(), time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, c.Sleep(ctx, time.Hour), context.Canceled)
	assert.ErrorIs(t, c.Sleep(ctx, 0), context.Canceled)
	assert.WithinDuration(t, time.Now(), c.Now(), time.Minute)
}

func TestFakeClockWakesInOrder(t *testing.T) {
	c := newFakeClock()
	done := make(chan time.Duration, 2)
	for _, d := range []time.Duration{time.Second, 3 * time.Second} {
		go func() {
			if c.Sleep(context.Background(), d) == nil {
				done <- d
			}
		}()
	}
	c.waitSleepers(t, 2)
	c.Advance(2 * time.Second)
	assert.Equal(t, time.Second, <-done)
	assert.Equal(t, 1, c.sleeping())
	c.Advance(time.Second)
	assert.Equal(t, 3*time.Second, <-done)
}
