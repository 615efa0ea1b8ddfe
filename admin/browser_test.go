package admin

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromium runs headless Debian chromium on url with extra flags and returns
// its standard output. Every flag keeps it off the network beyond url.
func chromium(t *testing.T, url string, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	require.NoError(t, err, "chromium is a test dependency (.ci/deps installs it)")
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(),
		"--virtual-time-budget=3000",
	}, extra...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "chromium: %s", stderr.String())
	return string(out)
}

// TestStatusPageInChromium loads the status page in a real browser and
// checks that its script rendered a row per upstream, in the state's
// colours, the totals and the recent error; then saves a screenshot.
func TestStatusPageInChromium(t *testing.T) {
	dead := "http://" + closedPort(t)
	w := startWorld(t, worldOpts{upstreams: []string{"direct://127.0.0.2", "direct://127.0.0.3", dead}})
	fwd := w.httpProxyClient(false)
	for range 3 {
		code, _ := fetch(t, fwd, "http://"+w.origin+"/bytes/20000")
		require.Equal(t, http.StatusOK, code)
	}
	// A refused target, so the recent errors have a row.
	code, _ := fetch(t, fwd, "http://"+closedPort(t)+"/")
	require.Equal(t, http.StatusBadGateway, code)
	w.waitMetric(4, "hopper_tunnels_total", "proto", "http")

	dom := chromium(t, w.admin+"/", "--dump-dom")
	require.Contains(t, dom, `data-loaded="true"`, "the page's script ran and fetched the APIs:\n%s", dom)
	rows := regexp.MustCompile(`<tr class="up-row state-(\w+)" data-pool="default" data-label="([^"]+)">`).FindAllStringSubmatch(dom, -1)
	got := map[string]string{}
	for _, r := range rows {
		got[r[2]] = r[1]
	}
	assert.Equal(t, map[string]string{
		"direct@127.0.0.2": "healthy",
		"direct@127.0.0.3": "healthy",
		dead:               "quarantined",
	}, got, "one row per upstream with its state class")
	assert.Contains(t, dom, `<span id="health" class="badge ok"`)
	assert.Contains(t, dom, `<div class="value" id="t-tunnels">4</div>`)
	assert.Contains(t, dom, `<div class="value" id="t-healthy">2 / 3</div>`)
	assert.Regexp(t, `<tr class="error-row">.*?<td>http</td><td>refused</td>`, dom)
	assert.Regexp(t, `<polyline id="spark-line" points="[0-9., ]{100,}"`, dom, "sparkline drawn")

	shot := filepath.Join(t.TempDir(), "status.png")
	chromium(t, w.admin+"/", "--screenshot="+shot, "--window-size=1200,900", "--hide-scrollbars")
	png, err := os.ReadFile(shot)
	require.NoError(t, err)
	require.Greater(t, len(png), 10_000, "a rendered page, not a blank image")
	assert.Equal(t, "\x89PNG\r\n\x1a\n", string(png[:8]))
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
}

// TestStatusPageIsSelfContained: the page and its assets come from the
// binary and name nothing elsewhere; the CSP forbids other origins.
func TestStatusPageIsSelfContained(t *testing.T) {
	s, err := New(Config{Metrics: NewMetrics(MetricsConfig{})})
	require.NoError(t, err)
	for _, path := range []string{"/", "/static/app.js", "/static/style.css"} {
		r := serve(s, path)
		require.Equal(t, http.StatusOK, r.code, path)
		body := strings.ReplaceAll(r.body, "http://www.w3.org/2000/svg", "") // a namespace name, not a fetch
		assert.NotRegexp(t, `(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/`, body, "%s loads from another origin", path)
		assert.Contains(t, r.header.Get("Content-Security-Policy"), "default-src 'none'", path)
	}
	assert.Contains(t, serve(s, "/").body, `<table id="upstreams">`)
	assert.Contains(t, serve(s, "/static/app.js").header.Get("Content-Type"), "javascript")
}
