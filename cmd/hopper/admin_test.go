package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/admin"
)

// TestServeAdmin runs `hopper serve --admin 127.0.0.1:0` in-process: it
// prints one line per endpoint, and the endpoints answer and count traffic.
func TestServeAdmin(t *testing.T) {
	h := startInProcess(t, "--admin", "127.0.0.1:0")
	stdout, proxyAddr := h.stdout, h.Addr
	endpoint := regexp.MustCompile(`(?m)^admin: (.+?) +(http://\S+)$`)
	var urls map[string]string
	require.Eventually(t, func() bool {
		urls = map[string]string{}
		for _, m := range endpoint.FindAllStringSubmatch(stdout.String(), -1) {
			urls[m[1]] = m[2]
		}
		return len(urls) == 6
	}, 15*time.Second, 5*time.Millisecond, "endpoint lines: %q", stdout.String())
	base := strings.TrimSuffix(urls["metrics"], "/metrics")
	assert.Equal(t, base+"/", urls["status page"])
	assert.Equal(t, base+"/proxy.pac", urls["proxy auto-config"])

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	get := func(u string) (int, string) {
		resp, err := client.Get(u)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, body := get(urls["health"])
	assert.Equal(t, http.StatusOK, code, body)
	_, pac := get(urls["proxy auto-config"])
	assert.Contains(t, pac, `"PROXY `+proxyAddr+"; SOCKS5 "+proxyAddr+`"`)

	// A request through the proxy shows in /metrics.
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxyAddr})}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(urls["health"])
	require.NoError(t, err)
	resp.Body.Close()
	require.Eventually(t, func() bool {
		_, m := get(urls["metrics"])
		return strings.Contains(m, `hopper_tunnels_total{proto="http",result="ok"} 1`)
	}, 15*time.Second, 10*time.Millisecond)
}

func TestServeAdminBeyondLoopbackNeedsAccounts(t *testing.T) {
	err := serve(context.Background(), []string{"--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"}, io.Discard, io.Discard)
	require.ErrorIs(t, err, admin.ErrOpenAdmin)
	require.ErrorAs(t, err, new(*usageError))
	_, err = parseServe([]string{"--admin", "nonsense"}, io.Discard)
	require.ErrorAs(t, err, new(*usageError))
}
