package mitm

import (
	"context"
	"fmt"
	"html"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// page is an origin page that shows what the origin saw.
func page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><html><body><p id=ua>%s</p><p id=proto>%s</p><p>hello from origin</p></body></html>",
			html.EscapeString(r.UserAgent()), r.Proto)
	})
}

// run executes a command with a deadline and returns its combined output.
func run(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

func TestCurlTrustsHoppersCA(t *testing.T) {
	w := newWorld(t, page(), worldOpts{h2: true})
	caFile := writeFile(t, t.TempDir(), "ca.pem", w.ca.PEM())
	chrome := profile(t, "chrome")
	for _, args := range [][]string{
		{"--http1.1"},
		{"--http2"},
		{"--compressed"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			all := append([]string{"-sS", "--fail", "--max-time", "20", "--proxy", w.fe.URL().String(),
				"--cacert", caFile, "-H", "Hopper-Session: x"}, args...)
			out := run(t, nil, "curl", append(all, "https://shop.example/")...)
			assert.Contains(t, out, "hello from origin")
			assert.Contains(t, out, html.EscapeString(chrome.Header("User-Agent")), "the origin saw the profile, not curl")
			assert.NotContains(t, out, "curl/")
		})
	}
}

func TestChromiumLoadsAPageThroughHopper(t *testing.T) {
	w := newWorld(t, page(), worldOpts{h2: true, cfg: func(c *Config) { c.Profile = "firefox" }})
	tmp := t.TempDir()
	home := filepath.Join(tmp, "home")
	nssdb := filepath.Join(home, ".pki", "nssdb")
	require.NoError(t, os.MkdirAll(nssdb, 0o700))
	caFile := writeFile(t, tmp, "ca.pem", w.ca.PEM())
	run(t, nil, "certutil", "-d", "sql:"+nssdb, "-N", "--empty-password")
	run(t, nil, "certutil", "-d", "sql:"+nssdb, "-A", "-t", "C,,", "-n", "hopper", "-i", caFile)

	_, port, err := net.SplitHostPort(w.origin.addr())
	require.NoError(t, err)
	out := run(t, []string{"HOME=" + home}, "chromium",
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(tmp, "profile"),
		"--proxy-server=http://"+w.fe.ln.Addr().String(),
		"--proxy-bypass-list=<-loopback>", // Chromium skips proxies for localhost otherwise
		"--dump-dom", "https://localhost:"+port+"/")
	assert.Contains(t, out, "hello from origin", "Chromium trusted hopper's leaf for localhost")
	firefox := profile(t, "firefox")
	assert.Contains(t, out, html.EscapeString(firefox.Header("User-Agent")), "the origin saw the profile's User-Agent")
	assert.Contains(t, out, "HTTP/2.0")
	assert.NotContains(t, out, "HeadlessChrome")

	hellos := w.origin.Hellos()
	require.NotEmpty(t, hellos)
	got := summarize(hellos[0].Ciphers, hellos[0].Extensions, hellos[0].ALPN)
	assert.Equal(t, expectedHello(t, firefox.HelloID).Ciphers, got.Ciphers, "the origin saw Firefox's ClientHello, not Chromium's")
}
