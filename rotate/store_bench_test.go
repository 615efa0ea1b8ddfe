package rotate

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
)

// benchStores runs fn against the memory store and a Redis store on a
// local redis-server, in the same run so the figures compare.
func benchStores(b *testing.B, fn func(b *testing.B, st Store)) {
	b.Run("memory", func(b *testing.B) { fn(b, NewMemoryStore(nil)) })
	b.Run("redis", func(b *testing.B) {
		srv := startRedis(b)
		fn(b, newTestRedisStore(b, srv, "bench", zap.NewNop()))
	})
}

func benchPool(b *testing.B, st Store, n int) *Pool {
	var entries []string
	for i := range n {
		entries = append(entries, fmt.Sprintf("direct://127.0.%d.%d", 10+i/200, 1+i%200))
	}
	p, err := New(Config{Store: st, Name: "bench", Logger: zap.NewNop()}, mustUpstreams(b, entries...))
	require.NoError(b, err)
	b.Cleanup(func() { _ = p.Close() })
	return p
}

// BenchmarkStatePick is the latency of a first pick under parallel load:
// the memory store picks from the selector's own cursor, a shared store
// from blocks taken from its counter (one INCRBY per block, amortised).
func BenchmarkStatePick(b *testing.B) {
	benchStores(b, func(b *testing.B, st Store) {
		p := benchPool(b, st, 1000)
		req := &dial.Request{Target: "x:1"}
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if u, err := p.pick(ctx, req, 0, nil, PolicyRoundRobin); u == nil || err != nil {
					b.Fatal("no upstream")
				}
			}
		})
	})
}

// BenchmarkStateTunnels opens and closes tunnels through a pool of direct
// egresses to a loopback origin, two at a time: plain round robin, a sticky
// session per request (a store read and write each), and a reservation
// per tunnel (acquire and compare-and-delete), with each store.
//
// The origin closes each connection at once and the client waits for that
// before closing its end, so TIME_WAIT stays on the origin's side and the
// egress addresses never run out of ports.
func BenchmarkStateTunnels(b *testing.B) {
	port := startClosingOrigin(b)
	for _, mode := range []string{"rotate", "session", "reserve"} {
		b.Run(mode, func(b *testing.B) {
			benchStores(b, func(b *testing.B, st Store) {
				p := benchPool(b, st, 8)
				o := p.defaultOpts()
				o.reserve = mode == "reserve"
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						req := &dial.Request{Target: "localhost:" + port}
						if mode == "session" {
							i++
							req.Session = fmt.Sprint("s", i%64)
						}
						out, err := p.dial(ctx, req, o)
						if err != nil {
							b.Fatal(err)
						}
						var one [1]byte
						_, _ = out.Conn.Read(one[:]) // EOF: the origin closed first
						out.Done(false)
					}
				})
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tunnels/s")
			})
		})
	}
}

// startClosingOrigin accepts connections and closes them at once; it
// returns its port on 127.0.0.1.
func startClosingOrigin(b *testing.B) string {
	srv := testnet.Serve(b, testnet.Listen(b, ""), func(net.Conn) {}) // closed when the handler returns
	_, port, _ := net.SplitHostPort(srv.Addr())
	return port
}
