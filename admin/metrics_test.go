package admin

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

// TestMetricsFollowTraffic makes requests of each protocol through a real
// proxy and checks that the scraped numbers move by exactly what was done.
func TestMetricsFollowTraffic(t *testing.T) {
	w := startWorld(t, worldOpts{})
	before := w.scrape()
	for _, p := range []string{"http", "connect", "socks5"} {
		assert.Zero(t, before.get("hopper_tunnels_total", "proto", p), p)
		assert.True(t, before.has("hopper_tunnels_active", "proto", p), "active gauge of %s exported before use", p)
	}
	assert.False(t, before.has("hopper_pool_upstreams"), "direct egress exports no pools")

	// Three forward requests of 1000 bytes each.
	fwd := w.httpProxyClient(false)
	for range 3 {
		code, n := fetch(t, fwd, "http://"+w.origin+"/bytes/1000")
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, 1000, n)
	}
	// One CONNECT tunnel and one SOCKS5 tunnel.
	code, n := fetch(t, w.httpProxyClient(true), "http://"+w.origin+"/bytes/5000")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 5000, n)
	code, n = fetch(t, w.socksClient(), "http://"+w.origin+"/bytes/2000")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 2000, n)

	w.waitMetric(3, "hopper_tunnels_total", "proto", "http", "result", "ok")
	w.waitMetric(1, "hopper_tunnels_total", "proto", "connect", "result", "ok")
	w.waitMetric(1, "hopper_tunnels_total", "proto", "socks5", "result", "ok")
	after := w.settled()

	down := func(s metricSet, p string) float64 {
		return s.get("hopper_tunnel_bytes_total", "proto", p, "direction", "down")
	}
	up := func(s metricSet, p string) float64 {
		return s.get("hopper_tunnel_bytes_total", "proto", p, "direction", "up")
	}
	// Bodies plus response heads went down; request heads went up.
	assert.GreaterOrEqual(t, down(after, "http"), 3000.0)
	assert.Less(t, down(after, "http"), 3000.0+3*1000)
	assert.GreaterOrEqual(t, down(after, "connect"), 5000.0)
	assert.GreaterOrEqual(t, down(after, "socks5"), 2000.0)
	assert.Less(t, down(after, "socks5"), 2000.0+1000)
	for _, p := range []string{"http", "connect", "socks5"} {
		assert.Positive(t, up(after, p), p)
		assert.Equal(t, 0.0, after.get("hopper_tunnels_active", "proto", p), p)
	}
	// One handshake per tunnel, one successful dial each.
	assert.Equal(t, 3.0, after.get("hopper_handshake_duration_seconds", "proto", "http"))
	assert.Equal(t, 1.0, after.get("hopper_handshake_duration_seconds", "proto", "connect"))
	assert.Equal(t, 1.0, after.get("hopper_handshake_duration_seconds", "proto", "socks5"))
	assert.Equal(t, 5.0, after.get("hopper_dial_duration_seconds", "result", "ok"))

	// A failed CONNECT counts as refused and shows among the recent errors.
	dead := closedPort(t)
	_, err := dialConnect(context.Background(), w.proxy, dead)
	require.Error(t, err)
	w.waitMetric(1, "hopper_tunnels_total", "proto", "connect", "result", dial.KindRefused.String())
	// Garbage is a bad request of no known protocol.
	c, err := net.Dial("tcp", w.proxy)
	require.NoError(t, err)
	_, err = io.WriteString(c, "NONSENSE\r\n\r\n")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, c)
	c.Close()
	after = w.waitMetric(1, "hopper_tunnels_total", "proto", "unknown", "result", "bad-request")
	assert.Equal(t, 1.0, after.get("hopper_handshake_duration_seconds", "proto", "connect"), "a refused tunnel has no handshake time")

	var st Stats
	w.getJSON("/api/stats", &st)
	assert.Equal(t, uint64(7), st.Tunnels)
	assert.Equal(t, uint64(5), st.ByResult["ok"])
	assert.Equal(t, uint64(1), st.ByResult["refused"])
	assert.Equal(t, uint64(3), st.ByProtocol["http"].Tunnels)
	assert.Equal(t, uint64(down(after, "http")+down(after, "connect")+down(after, "socks5")), st.BytesDown)
	assert.Equal(t, EgressDirect, st.Egress)
	assert.True(t, st.Health.OK, st.Health.Reason)
	require.Len(t, st.RecentErrors, 2, "refused and bad-request")
	assert.Equal(t, "bad-request", st.RecentErrors[0].Result, "newest first")
	assert.Equal(t, "refused", st.RecentErrors[1].Result)
	assert.Equal(t, dead, st.RecentErrors[1].Target)
	assert.NotEmpty(t, st.RecentErrors[1].Error)
	var tunnels, downBytes int64
	for _, s := range st.Series {
		tunnels += int64(s.Tunnels)
		downBytes += s.Down
	}
	assert.Equal(t, int64(7), tunnels, "every tunnel lands in the series")
	assert.Equal(t, int64(st.BytesDown), downBytes)
}

// TestActiveGaugeCountsOpenTunnels holds a tunnel open and watches the gauge
// go up and back down.
func TestActiveGaugeCountsOpenTunnels(t *testing.T) {
	w := startWorld(t, worldOpts{})
	c, err := dialConnect(context.Background(), w.proxy, w.origin)
	require.NoError(t, err)
	w.waitMetric(1, "hopper_tunnels_active", "proto", "connect")
	var st Stats
	w.getJSON("/api/stats", &st)
	assert.Equal(t, int64(1), st.Active)
	require.NoError(t, c.Close())
	s := w.settled()
	assert.Equal(t, 1.0, s.get("hopper_tunnels_total", "proto", "connect", "result", "ok"))
}

// TestUpstreamMetrics routes through a pool of a working direct upstream and
// a dead HTTP proxy: the dead one is quarantined after its first failure,
// and the per-upstream series say so.
func TestUpstreamMetrics(t *testing.T) {
	dead := "http://" + closedPort(t)
	w := startWorld(t, worldOpts{upstreams: []string{"direct://127.0.0.2", dead}})
	fwd := w.httpProxyClient(false)
	const requests = 4
	for range requests {
		code, _ := fetch(t, fwd, "http://"+w.origin+"/bytes/10")
		require.Equal(t, http.StatusOK, code, "a failing upstream is retried elsewhere")
	}
	w.waitMetric(requests, "hopper_tunnels_total", "proto", "http", "result", "ok")
	s := w.settled()

	const pool = "default"
	assert.Equal(t, 2.0, s.get("hopper_pool_upstreams", "pool", pool))
	assert.Equal(t, 1.0, s.get("hopper_pool_healthy_upstreams", "pool", pool))
	assert.Equal(t, 1.0, s.get("hopper_upstream_healthy", "pool", pool, "upstream", "direct@127.0.0.2"))
	assert.Equal(t, 0.0, s.get("hopper_upstream_healthy", "pool", pool, "upstream", dead))
	assert.True(t, s.has("hopper_upstream_healthy", "pool", pool, "upstream", dead))
	assert.Equal(t, 1.0, s.get("hopper_upstream_dial_failures_total", "upstream", dead, "cause", "upstream"))
	assert.Equal(t, 1.0, s.get("hopper_upstream_dial_attempts_total", "upstream", dead))
	assert.Equal(t, 1.0, s.get("hopper_upstream_quarantines_total", "upstream", dead))
	assert.Equal(t, float64(requests), s.get("hopper_upstream_dial_attempts_total", "upstream", "direct@127.0.0.2"))
	assert.Equal(t, 0.0, s.get("hopper_upstream_dial_failures_total", "upstream", "direct@127.0.0.2"))
	assert.Positive(t, s.get("hopper_upstream_latency_seconds", "upstream", "direct@127.0.0.2"))
	assert.Equal(t, float64(requests), s.get("hopper_dial_duration_seconds", "result", "ok"))
	for name, fam := range s {
		for _, m := range fam.GetMetric() {
			for _, lp := range m.GetLabel() {
				assert.NotContains(t, []string{"target", "host", "client"}, lp.GetName(), "%s has a per-target label", name)
			}
		}
	}
	code, body := w.get("/healthz")
	assert.Equal(t, http.StatusOK, code, body)
}

func TestReloadsAndResultBound(t *testing.T) {
	m := NewMetrics(MetricsConfig{})
	m.Reloaded(nil)
	m.Reloaded(fmt.Errorf("list gone"))
	m.Reloaded(nil)
	// A front end inventing results cannot grow the label set past the bound.
	for i := range maxResults + 10 {
		m.TunnelOpened(dial.ProtocolHTTPConnect)
		m.TunnelClosed(dial.Record{Protocol: dial.ProtocolHTTPConnect, Result: fmt.Sprintf("r%d", i)})
	}
	m.TunnelOpened(dial.Protocol(200)) // out of range: counted as unknown
	m.TunnelClosed(dial.Record{Protocol: dial.Protocol(200), Result: "ok"})

	fams, err := m.Registry().Gather()
	require.NoError(t, err)
	s := metricSet{}
	for _, f := range fams {
		s[f.GetName()] = f
	}
	assert.Equal(t, 2.0, s.get("hopper_reloads_total", "result", "ok"))
	assert.Equal(t, 1.0, s.get("hopper_reloads_total", "result", "failed"))
	assert.Len(t, s["hopper_tunnels_total"].GetMetric(), maxResults+2, "bounded, plus other for each protocol")
	assert.Equal(t, 10.0, s.get("hopper_tunnels_total", "proto", "connect", "result", resultOther))
	assert.Equal(t, float64(maxResults+11), s.get("hopper_tunnels_total"))
	assert.Equal(t, 1.0, s.get("hopper_tunnels_total", "proto", "unknown", "result", resultOther))
	assert.Equal(t, 0.0, s.get("hopper_tunnels_active"))
	st := m.stats("", nil)
	assert.Equal(t, uint64(3), st.Reloads)
	assert.Equal(t, uint64(1), st.ReloadsFailed)
}

func TestActivityRings(t *testing.T) {
	var a activity
	t0 := time.Unix(1_700_000_000, 0)
	for i := range maxRecentErrors + 5 {
		r := dial.Record{Protocol: dial.ProtocolSOCKS5, Result: "timeout", Target: fmt.Sprintf("h%d:1", i), Down: 10}
		a.add(t0.Add(time.Duration(i)*time.Second), &r, true)
	}
	errs := a.recentErrors()
	require.Len(t, errs, maxRecentErrors)
	assert.Equal(t, fmt.Sprintf("h%d:1", maxRecentErrors+4), errs[0].Target, "newest first")
	assert.Equal(t, "h5:1", errs[len(errs)-1].Target, "oldest kept")

	now := t0.Add(time.Duration(maxRecentErrors+4) * time.Second)
	series := a.series(now)
	require.Len(t, series, seriesLen)
	total := 0
	for i, s := range series {
		total += s.Tunnels
		if i > 0 {
			assert.Equal(t, SeriesStep, s.At.Sub(series[i-1].At))
		}
	}
	assert.Equal(t, maxRecentErrors+5, total)
	// Long after, the old buckets are gone rather than shown again.
	later := a.series(now.Add(seriesLen * SeriesStep))
	for _, s := range later {
		assert.Zero(t, s.Tunnels)
	}
	assert.True(t, strings.HasPrefix(errs[0].Proto, "socks5"))
}
