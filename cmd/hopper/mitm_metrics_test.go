package main

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/admin"
	"github.com/hopper-proxy/hopper/mitm"
)

var _ mitm.Observer = (*admin.Metrics)(nil)

// With --mitm and --admin, /metrics counts intercepted requests by profile,
// result and status class, and the leaves minted.
func TestMITMMetrics(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runCmd("ca", "init", "--ca-dir", dir)
	require.Equal(t, 0, code, stderr)
	origin := uaOrigin(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	adminAddr := ln.Addr().String()
	require.NoError(t, ln.Close())
	h := startHopper(t, "--mitm", "--ca-dir", dir, "--profile", "firefox", "--insecure-origin", "--admin", adminAddr)

	for range 3 {
		curl(t, "--proxy", "http://"+h.Addr, "--cacert", filepath.Join(dir, mitm.CACertFile), origin.URL+"/")
	}
	var metrics string
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + adminAddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		metrics = string(b)
		return strings.Contains(metrics, `hopper_mitm_requests_total{code="2xx",profile="firefox",result="ok"} 3`)
	}, 15*time.Second, 20*time.Millisecond, "%s", metrics)
	assert.Contains(t, metrics, "hopper_mitm_leaves_minted_total 1", "one leaf for the origin, cached after")
	assert.Contains(t, metrics, "hopper_mitm_identities 1")
	assert.Contains(t, metrics, "hopper_mitm_request_duration_seconds_count 3")
}
