package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"time"
)

// latencies is a set of per-operation times.
type latencies []time.Duration

// percentile is the nearest-rank p-th percentile (0 < p <= 100) in µs.
func (l latencies) percentile(p float64) float64 {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	k = max(0, min(k, len(s)-1))
	return float64(s[k]) / float64(time.Microsecond)
}

// rateResult is a closed-loop run: how many operations completed in how
// long, each one's time, and how many failed.
type rateResult struct {
	ops      int
	failures int
	firstErr error
	elapsed  time.Duration
	lat      latencies
}

func (r rateResult) perSecond() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// closedLoop runs workers that each call op until d has passed (at least
// once each), and gathers the times of the calls that succeeded.
func closedLoop(ctx context.Context, workers int, d time.Duration, op func(ctx context.Context, w int) error) rateResult {
	start := time.Now()
	deadline := start.Add(d)
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		res rateResult
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat latencies
			var failed int
			var first error
			for once := true; ctx.Err() == nil && (once || time.Now().Before(deadline)); once = false {
				t0 := time.Now()
				if err := op(ctx, w); err != nil {
					failed++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			defer mu.Unlock()
			res.lat = append(res.lat, lat...)
			res.failures += failed
			if res.firstErr == nil {
				res.firstErr = first
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.ops = len(res.lat)
	if res.ops == 0 && res.firstErr == nil {
		res.firstErr = ctx.Err()
	}
	return res
}

// echoOnce sends msg over c and checks it comes back unchanged.
func echoOnce(c net.Conn, msg, back []byte) error {
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("echo write: %w", err)
	}
	if _, err := io.ReadFull(c, back); err != nil {
		return fmt.Errorf("echo read: %w", err)
	}
	if !bytes.Equal(msg, back) {
		return fmt.Errorf("%w: echo returned different bytes", ErrBytesMismatch)
	}
	return nil
}

// newTunnels opens, uses (16-byte echo) and closes tunnels from concurrency
// clients for d.
func newTunnels(ctx context.Context, o *origins, r route, concurrency int, d time.Duration) rateResult {
	return closedLoop(ctx, concurrency, d, func(ctx context.Context, _ int) error {
		return oneTunnel(ctx, o, r)
	})
}

func oneTunnel(ctx context.Context, o *origins, r route) error {
	ctx, cancel := context.WithTimeout(ctx, safety)
	defer cancel()
	c, err := r.dial(ctx, o.echoAddr())
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(safety))
	var msg, back [16]byte
	copy(msg[:], "hopper-bench-16b")
	return echoOnce(c, msg[:], back[:])
}

// echoRTT times 64-byte round trips over one established tunnel for d.
func echoRTT(ctx context.Context, o *origins, r route, d time.Duration) (rateResult, error) {
	c, err := r.dial(ctx, o.echoAddr())
	if err != nil {
		return rateResult{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d + safety))
	defer interruptOnDone(ctx, c)()
	msg := bytes.Repeat([]byte{'e'}, 64)
	back := make([]byte, 64)
	for range 50 { // warm up: the first trips pay for page faults and scheduling
		if err := echoOnce(c, msg, back); err != nil {
			return rateResult{}, err
		}
	}
	res := closedLoop(ctx, 1, d, func(context.Context, int) error {
		err := echoOnce(c, msg, back)
		if err != nil {
			// The tunnel is gone; stop instead of counting one failure
			// per remaining microsecond.
			_ = c.SetDeadline(time.Now())
		}
		return err
	})
	if res.failures > 0 {
		return res, fmt.Errorf("echo round trip: %w", res.firstErr)
	}
	return res, nil
}

// errNoOps marks a closed-loop run in which nothing succeeded.
var errNoOps = errors.New("bench: no operation succeeded")
