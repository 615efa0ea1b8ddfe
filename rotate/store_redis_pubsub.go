package rotate

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// Subscribe receives the prefixed channel on a connection of its own. It
// reconnects (and resubscribes) after any interruption, calling fn(nil)
// each time the subscription is confirmed, and again whenever the store
// recovers from being degraded, since publishers may have failed meanwhile.
// While the store is degraded it also checks the server every 500ms, so the
// store heals without waiting for a request.
func (r *RedisStore) Subscribe(ctx context.Context, channel string, fn func(msg []byte)) error {
	ps := r.c.Subscribe(ctx)
	defer ps.Close()
	seen := r.recovered.Load()
	subscribed := false
	for ctx.Err() == nil {
		if !subscribed {
			// Sends SUBSCRIBE; go-redis resubscribes by itself after
			// reconnecting, and either way a confirmation follows. Trying
			// every 500ms doubles as the health check of a store that was
			// down from the start.
			sctx, cancel := context.WithTimeout(ctx, r.timeout)
			err := ps.Subscribe(sctx, r.key(channel))
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				r.fail(err)
				if !sleepCtx(ctx, healthCheckEvery) {
					break
				}
				continue
			}
			subscribed = true
		}
		msg, err := ps.ReceiveTimeout(ctx, healthCheckEvery)
		if g := r.recovered.Load(); g != seen {
			seen = g
			fn(nil)
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				fn(nil)
			}
			continue
		case *redis.Message:
			fn([]byte(m.Payload))
			continue
		case *redis.Pong:
			continue
		}
		if ctx.Err() != nil {
			break
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// Quiet channel: a chance to check a degraded store.
			if r.down.Load() {
				r.healthCheck(ctx)
			}
			continue
		}
		// The connection broke; the next receive reconnects. Wait a little
		// so a dead server is not hammered, and check the store meanwhile.
		if r.down.Load() {
			r.healthCheck(ctx)
		} else if err != nil {
			r.fail(err)
		}
		if !sleepCtx(ctx, healthCheckEvery) {
			break
		}
	}
	return nil
}

// healthCheck pings a degraded store, healing it if the server answers.
func (r *RedisStore) healthCheck(ctx context.Context) {
	if !r.mayProbe(healthCheckEvery / 2) {
		return
	}
	started := time.Now().UnixNano()
	octx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.c.Ping(octx).Err(); err != nil {
		if ctx.Err() == nil {
			r.fail(err)
		}
		return
	}
	r.up(started)
}

// sleepCtx waits d or until ctx ends; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
