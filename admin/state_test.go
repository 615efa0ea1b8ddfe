package admin

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/rotate"
)

// sharedSource is a pool status plus a shared-state health, as a
// rotate.Router with --state redis://... reports them.
type sharedSource struct{ health rotate.StoreHealth }

func (s *sharedSource) Status() []rotate.PoolStatus {
	return []rotate.PoolStatus{{Name: "default", Healthy: 1, Upstreams: make([]rotate.UpstreamStatus, 1)}}
}
func (s *sharedSource) StateHealth() rotate.StoreHealth { return s.health }

// TestDegradedSharedState: /healthz stays 200 (hopper serves from local
// state) but says so, and hopper_state_degraded follows.
func TestDegradedSharedState(t *testing.T) {
	src := &sharedSource{health: rotate.StoreHealth{Backend: "redis", Shared: true}}
	m := NewMetrics(MetricsConfig{Upstreams: src})
	gauge := func() float64 {
		fams, err := m.Registry().Gather()
		require.NoError(t, err)
		for _, f := range fams {
			if f.GetName() == "hopper_state_degraded" {
				require.Len(t, f.Metric, 1)
				return f.Metric[0].GetGauge().GetValue()
			}
		}
		t.Fatal("hopper_state_degraded not exported")
		return -1
	}
	h := m.health(nil)
	assert.True(t, h.OK)
	assert.NotContains(t, h.Reason, "degraded")
	assert.Equal(t, 0.0, gauge())

	src.health.Degraded = true
	src.health.Since = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	src.health.Err = errors.New("dial tcp 127.0.0.1:6379: connection refused")
	h = m.health(nil)
	assert.True(t, h.OK, "degraded shared state does not fail the health check")
	assert.Contains(t, h.Reason, "shared state redis degraded since 2026-01-02T03:04:05Z")
	assert.Contains(t, h.Reason, "connection refused")
	assert.Equal(t, 1.0, gauge())
}
