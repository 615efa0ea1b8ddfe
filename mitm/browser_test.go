package mitm

import (
	"context"
	"encoding/json"
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

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/judge"
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
	assert.Equal(t, expectedHello(t, firefox).Ciphers, got.Ciphers, "the origin saw Firefox's ClientHello, not Chromium's")
}

// chromiumReport loads url in headless Chromium (trusting the NSS database
// under home, through proxy unless it is empty) and decodes the judge's
// report from the page.
func chromiumReport(t *testing.T, home, proxy, url string, extra ...string) judge.Report {
	t.Helper()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--host-resolver-rules=MAP shop.example 127.0.0.1"}
	if proxy != "" {
		args = append(args, "--proxy-server=http://"+proxy, "--proxy-bypass-list=<-loopback>")
	}
	args = append(append(args, extra...), "--dump-dom", url)
	out := run(t, []string{"HOME=" + home}, "chromium", args...)
	start, end := strings.Index(out, "{"), strings.LastIndex(out, "}")
	require.True(t, start >= 0 && end > start, "no report in:\n%s", out)
	var rep judge.Report
	require.NoError(t, json.Unmarshal([]byte(html.UnescapeString(out[start:end+1])), &rep), "%s", out)
	return rep
}

// nssHome makes a HOME whose NSS database trusts the PEM certificates.
func nssHome(t *testing.T, pems ...[]byte) string {
	t.Helper()
	tmp := t.TempDir()
	home := filepath.Join(tmp, "home")
	nssdb := filepath.Join(home, ".pki", "nssdb")
	require.NoError(t, os.MkdirAll(nssdb, 0o700))
	run(t, nil, "certutil", "-d", "sql:"+nssdb, "-N", "--empty-password")
	for i, p := range pems {
		f := writeFile(t, tmp, fmt.Sprintf("ca%d.pem", i), p)
		run(t, nil, "certutil", "-d", "sql:"+nssdb, "-A", "-t", "C,,", "-n", fmt.Sprintf("ca%d", i), "-i", f)
	}
	return home
}

// A real browser behind hopper in mirror mode keeps its own fingerprint:
// the judge sees the same JA4, HTTP/2 fingerprint and header order from
// Chromium through hopper as from Chromium straight.
func TestChromiumKeepsItsFingerprintInMirrorMode(t *testing.T) {
	pki := newOriginPKI(t, testNames...)
	w, judgeAddr := newJudgeWorld(t, pki, nil, func(c *Config) { c.Profile = ProfileMirror })
	home := nssHome(t, w.ca.PEM(), pki.pem)
	_, port, err := net.SplitHostPort(judgeAddr)
	require.NoError(t, err)
	url := "https://shop.example:" + port + "/"

	direct := chromiumReport(t, home, "", url)
	via := chromiumReport(t, home, w.fe.ln.Addr().String(), url)
	requireMirrored(t, "Chromium", w, direct, via)
}

// requireMirrored checks that the second of a browser's two visits went
// through hopper, intercepted, and that the judge saw the same JA4, HTTP/2
// fingerprint and header order through hopper (via) as straight (direct).
func requireMirrored(t *testing.T, browser string, w *world, direct, via judge.Report) {
	t.Helper()
	reqs := w.dialer.Requests()
	require.NotEmpty(t, reqs, "the second visit went through hopper")
	assert.Equal(t, dial.ProtocolMITM, reqs[0].Protocol, "and was intercepted")
	require.NotNil(t, direct.TLS)
	require.NotNil(t, via.TLS)
	t.Logf("%s: JA4 %s, HTTP/2 %s", browser, direct.TLS.JA4, direct.HTTP2.Akamai)
	assert.Equal(t, direct.TLS.JA4, via.TLS.JA4, "JA4 through hopper")
	assert.Equal(t, direct.TLS.JA4R, via.TLS.JA4R)
	require.NotNil(t, direct.HTTP2)
	require.NotNil(t, via.HTTP2)
	assert.Equal(t, direct.HTTP2.Akamai, via.HTTP2.Akamai, "HTTP/2 fingerprint through hopper")
	assert.Equal(t, direct.HTTP2.HeadersPriority, via.HTTP2.HeadersPriority)
	assert.Equal(t, direct.HeaderOrder, via.HeaderOrder, "header order through hopper")
	assert.Equal(t, direct.Headers["User-Agent"], via.Headers["User-Agent"])
}
