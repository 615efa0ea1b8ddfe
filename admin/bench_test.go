package admin

import (
	"errors"
	"testing"
	"time"

	"github.com/hopper-proxy/hopper/dial"
)

// BenchmarkObserve is what the proxy's request path pays per tunnel for
// metrics: one TunnelOpened and one TunnelClosed, from all CPUs at once.
// The "nop" case is the interface call alone.
func BenchmarkObserve(b *testing.B) {
	dials := []dial.Attempt{{Upstream: "direct", Elapsed: 300 * time.Microsecond}}
	ok := dial.Record{Protocol: dial.ProtocolHTTPConnect, Result: "ok", Target: "example.com:443",
		Upstream: "direct", Attempts: 1, Dials: dials, Up: 1200, Down: 64000,
		Duration: time.Second, Established: 400 * time.Microsecond}
	failed := ok
	failed.Result, failed.Err, failed.Up, failed.Down = "timeout", errors.New("dial example.com:443: timed out"), 0, 0
	for _, c := range []struct {
		name string
		obs  dial.Observer
		rec  dial.Record
	}{
		{"nop", dial.NopObserver{}, ok},
		{"metrics-ok", NewMetrics(MetricsConfig{}), ok},
		{"metrics-failed", NewMetrics(MetricsConfig{}), failed},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.obs.TunnelOpened(c.rec.Protocol)
					c.obs.TunnelClosed(c.rec)
				}
			})
		})
	}
}
