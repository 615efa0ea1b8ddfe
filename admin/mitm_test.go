package admin

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInterceptionMetrics(t *testing.T) {
	m := NewMetrics(MetricsConfig{})
	m.InterceptedRequest("chrome", 200, "ok", time.Millisecond) // before WatchInterception: nothing to count into
	fams, err := m.Registry().Gather()
	require.NoError(t, err)
	for _, f := range fams {
		assert.NotContains(t, f.GetName(), "hopper_mitm_", "no interception series without --mitm")
	}

	minted, identities := uint64(3), 7
	m.WatchInterception(func() uint64 { return minted }, func() int { return identities })
	m.InterceptedRequest("chrome", 200, "ok", 20*time.Millisecond)
	m.InterceptedRequest("chrome", 204, "ok", time.Millisecond)
	m.InterceptedRequest("firefox", 429, "ok", time.Millisecond)
	m.InterceptedRequest("", 0, "timeout", time.Second)
	m.IdentityRotated("429")
	m.IdentityRotated("429")
	m.IdentityRotated("requests")

	fams, err = m.Registry().Gather()
	require.NoError(t, err)
	s := metricSet{}
	for _, f := range fams {
		s[f.GetName()] = f
	}
	assert.Equal(t, 2.0, s.get("hopper_mitm_requests_total", "profile", "chrome", "result", "ok", "code", "2xx"))
	assert.Equal(t, 1.0, s.get("hopper_mitm_requests_total", "profile", "firefox", "result", "ok", "code", "4xx"))
	assert.Equal(t, 1.0, s.get("hopper_mitm_requests_total", "profile", "none", "result", "timeout", "code", "none"))
	assert.Equal(t, 2.0, s.get("hopper_mitm_identity_rotations_total", "reason", "429"))
	assert.Equal(t, 1.0, s.get("hopper_mitm_identity_rotations_total", "reason", "requests"))
	assert.Equal(t, uint64(4), s["hopper_mitm_request_duration_seconds"].GetMetric()[0].GetHistogram().GetSampleCount())
	assert.Equal(t, 3.0, s.get("hopper_mitm_leaves_minted_total"))
	assert.Equal(t, 7.0, s.get("hopper_mitm_identities"))
	minted, identities = 4, 2
	fams, err = m.Registry().Gather()
	require.NoError(t, err)
	for _, f := range fams {
		s[f.GetName()] = f
	}
	assert.Equal(t, 4.0, s.get("hopper_mitm_leaves_minted_total"), "read at scrape time")
	assert.Equal(t, 2.0, s.get("hopper_mitm_identities"))
}
