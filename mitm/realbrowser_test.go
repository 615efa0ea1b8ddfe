package mitm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/fingerprint"
	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/judge"
	"github.com/hopper-proxy/hopper/relay"
)

// updateHellos re-records testdata/hellos from the installed browsers: after
// a browser update, `go test ./mitm -run TestRealBrowsersMatchTheirProfiles
// -update-hellos` writes <browser>-<major>.bin, which the profile then
// embeds (profiles_builtin.go).
var updateHellos = flag.Bool("update-hellos", false, "record the installed browsers' ClientHellos into testdata/hellos")

// browserRun bounds one browser's start, page load and exit.
const browserRun = 45 * time.Second

// helloTap relays loopback connections to an address and keeps the first
// ClientHello record each one sends: what a browser sent the judge.
type helloTap struct {
	srv *testnet.Server

	mu     sync.Mutex
	hellos [][]byte
}

func newHelloTap(t *testing.T, to string) *helloTap {
	t.Helper()
	tap := &helloTap{srv: testnet.NewServer(t, testnet.Listen(t, ""))}
	tap.srv.Serve(func(c net.Conn) { tap.relay(c, to) })
	return tap
}

func (tap *helloTap) relay(c net.Conn, to string) {
	up, err := net.DialTimeout("tcp", to, 5*time.Second)
	if err != nil || !tap.srv.Track(up) {
		return
	}
	defer tap.srv.Untrack(up)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var early []byte
	buf := make([]byte, 4096)
	for {
		n, rerr := c.Read(buf)
		early = append(early, buf[:n]...)
		_, _, used, err := fingerprint.ExtractClientHello(early)
		if err == nil {
			tap.mu.Lock()
			tap.hellos = append(tap.hellos, slices.Clone(early[:used]))
			tap.mu.Unlock()
			break
		}
		if !errors.Is(err, fingerprint.ErrIncomplete) || rerr != nil {
			return
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	if _, err := up.Write(early); err != nil {
		return
	}
	_, _ = relay.Pipe(c, up, 0)
}

// first returns the first ClientHello record the tap saw.
func (tap *helloTap) first(t *testing.T) []byte {
	t.Helper()
	tap.mu.Lock()
	defer tap.mu.Unlock()
	require.NotEmpty(t, tap.hellos, "the browser connected")
	return tap.hellos[0]
}

// deadPort is a loopback address nothing listens on (it did a moment
// ago): the proxy of a browser that must reach nothing but the judge.
// Refused at once, Firefox's background requests do not hold up its start.
func deadPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// firefoxReport loads url (on shop.example, which resolves to loopback) in
// headless Firefox with a fresh profile whose NSS database trusts cas, and
// decodes the judge's report from the page. Firefox goes through the HTTP
// proxy at proxy, or, when proxy is empty, straight to shop.example and
// through a dead proxy for anything else. The page is read over Marionette
// once loaded; the URL is given on the command line, as a typed-in
// navigation.
func firefoxReport(t *testing.T, proxy, page string, cas ...[]byte) judge.Report {
	t.Helper()
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "profile")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	run(t, nil, "certutil", "-d", "sql:"+dir, "-N", "--empty-password")
	for i, p := range cas {
		f := writeFile(t, tmp, fmt.Sprintf("ca%d.pem", i), p)
		run(t, nil, "certutil", "-d", "sql:"+dir, "-A", "-t", "C,,", "-n", fmt.Sprintf("ca%d", i), "-i", f)
	}
	// A PAC sends shop.example straight or to proxy, and anything else
	// (Firefox's background services) to a dead port.
	route := "DIRECT"
	if proxy != "" {
		route = "PROXY " + proxy
	}
	pac := fmt.Sprintf(`function FindProxyForURL(url, host) { return host == "shop.example" ? %q : "PROXY %s"; }`, route, deadPort(t))
	// Nothing here changes what Firefox sends an origin; Marionette's own
	// recommended preferences (left on) quiet its background services.
	prefs := []struct {
		name  string
		value any
	}{
		{"marionette.port", 0}, // any free port, written to MarionetteActivePort
		{"network.dns.localDomains", "shop.example"},
		{"network.trr.mode", 5},
		{"network.proxy.type", 2},
		{"network.proxy.autoconfig_url", "data:application/x-ns-proxy-autoconfig," + url.PathEscape(pac)},
		{"devtools.jsonview.enabled", false}, // the report as text in a <pre>
		{"browser.shell.checkDefaultBrowser", false},
		{"browser.startup.homepage_override.mstone", "ignore"},
		{"datareporting.policy.dataSubmissionEnabled", false},
		{"toolkit.telemetry.reportingpolicy.firstRun", false},
	}
	var userJS strings.Builder
	for _, p := range prefs {
		v, err := json.Marshal(p.value)
		require.NoError(t, err)
		fmt.Fprintf(&userJS, "user_pref(%q, %s);\n", p.name, v)
	}
	writeFile(t, dir, "user.js", []byte(userJS.String()))

	ctx, cancel := context.WithTimeout(context.Background(), browserRun)
	defer cancel()
	cmd := exec.CommandContext(ctx, "firefox-esr", "--headless", "--marionette", "--no-remote", "--profile", dir, page)
	cmd.Env = append(os.Environ(), "HOME="+tmp, "MOZ_CRASHREPORTER_DISABLE=1")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var m *marionette
	defer func() {
		if m != nil { // a clean exit: Firefox and its content processes
			_ = m.call("Marionette:Quit", map[string]any{"flags": []string{"eForceQuit"}}, nil)
			_ = m.Close()
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	m, err := dialMarionette(ctx, filepath.Join(dir, "MarionetteActivePort"), exited)
	require.NoError(t, err, "Firefox output:\n%s", out)
	require.NoError(t, m.call("WebDriver:NewSession", map[string]any{}, nil))
	var source struct{ Value string }
	for {
		require.NoError(t, m.call("WebDriver:GetPageSource", map[string]any{}, &source), "Firefox output:\n%s", out)
		if strings.Contains(source.Value, "header_order") {
			break
		}
		select {
		case <-ctx.Done():
			require.FailNow(t, "Firefox did not show the report", "page:\n%s\noutput:\n%s", source.Value, out)
		case <-time.After(100 * time.Millisecond):
		}
	}
	src := html.UnescapeString(source.Value)
	start, end := strings.Index(src, "{"), strings.LastIndex(src, "}")
	require.True(t, start >= 0 && end > start, "no report in:\n%s", src)
	var rep judge.Report
	require.NoError(t, json.Unmarshal([]byte(src[start:end+1]), &rep), "%s", src)
	return rep
}

// lockedBuffer collects a browser's output, which it writes while a
// failing test may read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// marionette is a client of Firefox's remote control protocol: JSON
// messages, each prefixed by its length and a colon.
type marionette struct {
	conn net.Conn
	br   *bufio.Reader
	id   int
}

// dialMarionette waits for Firefox to write its Marionette port to
// portFile and connects, until ctx ends or Firefox exits.
func dialMarionette(ctx context.Context, portFile string, exited <-chan error) (*marionette, error) {
	for {
		if b, err := os.ReadFile(portFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", string(bytes.TrimSpace(b))))
			if err != nil {
				return nil, err
			}
			if dl, ok := ctx.Deadline(); ok {
				_ = conn.SetDeadline(dl)
			}
			m := &marionette{conn: conn, br: bufio.NewReader(conn)}
			if _, err := m.read(); err != nil { // the greeting
				_ = conn.Close()
				return nil, err
			}
			return m, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("firefox exited before Marionette started: %v", err)
		case <-ctx.Done():
			return nil, fmt.Errorf("marionette did not start: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (m *marionette) read() ([]byte, error) {
	n, err := m.br.ReadString(':')
	if err != nil {
		return nil, err
	}
	size, err := strconv.Atoi(strings.TrimSuffix(n, ":"))
	if err != nil || size < 0 || size > 16<<20 {
		return nil, fmt.Errorf("marionette: bad length %q", n)
	}
	b := make([]byte, size)
	_, err = io.ReadFull(m.br, b)
	return b, err
}

// call sends command with params and decodes its result into result (nil
// to ignore it).
func (m *marionette) call(command string, params, result any) error {
	m.id++
	msg, err := json.Marshal([]any{0, m.id, command, params})
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(m.conn, "%d:%s", len(msg), msg); err != nil {
		return err
	}
	b, err := m.read()
	if err != nil {
		return fmt.Errorf("marionette %s: %w", command, err)
	}
	var resp []json.RawMessage
	if err := json.Unmarshal(b, &resp); err != nil || len(resp) != 4 {
		return fmt.Errorf("marionette %s: bad response %s", command, b)
	}
	if string(resp[2]) != "null" {
		return fmt.Errorf("marionette %s: %s", command, resp[2])
	}
	if result == nil {
		return nil
	}
	return json.Unmarshal(resp[3], result)
}

func (m *marionette) Close() error { return m.conn.Close() }

// browserMajor is the major version a User-Agent names for browser
// ("Chrome" also matches Chromium's HeadlessChrome).
func browserMajor(t *testing.T, ua, browser string) string {
	t.Helper()
	m := regexp.MustCompile(browser + `/(\d+)`).FindStringSubmatch(ua)
	require.NotNil(t, m, "%s in %q", browser, ua)
	return m[1]
}

// The current profiles are the real browsers installed here: the judge sees
// the same JA4, HTTP/2 fingerprint, HEADERS priority and navigation header
// order (names, in order) from Chromium as from the chrome profile through
// hopper, and from Firefox ESR as from the firefox profile, over HTTP/2 and
// HTTP/1.1. The headers' values match too, but for those naming the
// platform, which the profiles set to Windows.
func TestRealBrowsersMatchTheirProfiles(t *testing.T) {
	pki := newOriginPKI(t, testNames...)
	for _, tc := range []struct {
		browser, profile, uaToken, hello string
		visit                            func(t *testing.T, url string) judge.Report
	}{
		{"Chromium", "chrome", "Chrome", "chromium", func(t *testing.T, url string) judge.Report {
			return chromiumReport(t, nssHome(t, pki.pem), "", url)
		}},
		{"Firefox", "firefox", "Firefox", "firefox", func(t *testing.T, url string) judge.Report {
			return firefoxReport(t, "", url, pki.pem)
		}},
	} {
		for _, proto := range []string{"h2", "http/1.1"} {
			t.Run(tc.browser+" "+proto, func(t *testing.T) {
				w, judgeAddr := newJudgeWorld(t, pki, []string{proto}, func(c *Config) { c.Profile, c.RequestsPerDial = tc.profile, -1 })
				tap := newHelloTap(t, judgeAddr)
				_, port, err := net.SplitHostPort(tap.srv.Addr())
				require.NoError(t, err)
				want := tc.visit(t, "https://shop.example:"+port+"/")
				p := profile(t, tc.profile)
				got := report(t, do(t, w.client(t, proto == "h2"), "GET", "https://shop.example/", nil))

				require.NotNil(t, want.TLS)
				require.NotNil(t, got.TLS)
				t.Logf("%s: JA4 %s, User-Agent %s", tc.browser, want.TLS.JA4, want.Headers["User-Agent"])
				major := browserMajor(t, want.Headers["User-Agent"][0], tc.uaToken)
				if *updateHellos && proto == "h2" {
					name := filepath.Join("testdata", "hellos", tc.hello+"-"+major+".bin")
					require.NoError(t, os.WriteFile(name, tap.first(t), 0o644))
					t.Logf("recorded %s", name)
				}
				// Browsers update under the tests (Debian ships each Chromium
				// release): a profile one version behind still has to match
				// the browser's fingerprint, which rarely changes, but the
				// version it names is then only noted.
				sameVersion := major == browserMajor(t, p.Header("User-Agent"), tc.uaToken)
				if !sameVersion {
					t.Logf("NOTE: the %s profile names %s %s, the installed browser is %s: re-record with -update-hellos and update profiles_builtin.go",
						tc.profile, tc.browser, browserMajor(t, p.Header("User-Agent"), tc.uaToken), major)
				}
				assert.Equal(t, want.TLS.JA4, got.TLS.JA4, "JA4")
				assert.Equal(t, want.TLS.JA4R, got.TLS.JA4R)
				assert.Equal(t, want.TLS.ALPN, got.TLS.ALPN)
				assert.Equal(t, p.JA4, want.TLS.JA4, "the profile's JA4 is the browser's")
				assert.Equal(t, proto, want.TLS.Protocol)
				assert.Equal(t, proto, got.TLS.Protocol)
				if proto == "h2" {
					require.NotNil(t, want.HTTP2)
					require.NotNil(t, got.HTTP2)
					assert.Equal(t, want.HTTP2.Akamai, got.HTTP2.Akamai, "HTTP/2 fingerprint")
					assert.Equal(t, p.Akamai, want.HTTP2.Akamai)
					assert.Equal(t, want.HTTP2.PseudoHeaderOrder, got.HTTP2.PseudoHeaderOrder)
					assert.Equal(t, want.HTTP2.StreamID, got.HTTP2.StreamID, "the first request's stream")
					assert.Equal(t, want.HTTP2.HeadersPriority, got.HTTP2.HeadersPriority)
				}
				assert.Equal(t, want.HeaderOrder, got.HeaderOrder, "header order")
				for name, values := range want.Headers {
					if name == "User-Agent" || strings.HasPrefix(name, "Sec-Ch-Ua") {
						continue // the platform: Linux here, Windows in the profile
					}
					assert.Equal(t, values, got.Headers[name], name)
				}
				if brands := want.Headers["Sec-Ch-Ua"]; brands != nil && sameVersion {
					for _, b := range strings.Split(brands[0], ", ") {
						assert.Contains(t, got.Headers["Sec-Ch-Ua"][0], b, "Chromium's GREASE brand for this version")
					}
				}

				if tc.profile == "firefox" && proto == "h2" {
					// Firefox keeps one extension order: the recording's.
					assert.Equal(t, parseRecord(t, firefox153Hello).Extensions, parseRecord(t, tap.first(t)).Extensions,
						"Firefox sends the recorded extension order")
				}
			})
		}
	}
}

// Like Chromium, Firefox behind hopper in mirror mode keeps its own
// fingerprint: the same JA4, HTTP/2 fingerprint and header order through
// hopper as straight to the judge.
func TestFirefoxKeepsItsFingerprintInMirrorMode(t *testing.T) {
	pki := newOriginPKI(t, testNames...)
	w, judgeAddr := newJudgeWorld(t, pki, nil, func(c *Config) { c.Profile = ProfileMirror })
	_, port, err := net.SplitHostPort(judgeAddr)
	require.NoError(t, err)
	url := "https://shop.example:" + port + "/"

	direct := firefoxReport(t, "", url, pki.pem)
	via := firefoxReport(t, w.fe.ln.Addr().String(), url, w.ca.PEM())
	requireMirrored(t, "Firefox", w, direct, via)
	assert.Equal(t, direct.HTTP2.StreamID, via.HTTP2.StreamID, "Firefox's first stream through hopper")
}

// The chrome profile permutes its extensions per handshake, as Chrome does,
// around fixed GREASE, and varies its ECH GREASE payload; firefox keeps the
// recorded order. Both keep the set, and so the JA4.
func TestRecordedHellosRandomizeLikeTheBrowser(t *testing.T) {
	chrome, firefox := profile(t, "chrome"), profile(t, "firefox")
	recorded := parseRecord(t, chromium156Hello)
	orders, sizes := map[string]bool{}, map[int]bool{}
	for range 20 {
		h := profileHello(t, chrome)
		sizes[len(h.Raw)] = true
		assert.Equal(t, chrome.JA4, h.JA4())
		assert.ElementsMatch(t, withGREASEAt(h.Extensions, recorded.Extensions), recorded.Extensions)
		assert.True(t, fingerprint.IsGREASE(h.Extensions[0]), "GREASE first")
		assert.True(t, fingerprint.IsGREASE(h.Extensions[len(h.Extensions)-1]), "GREASE last")
		assert.NotEqual(t, h.Extensions[0], h.Extensions[len(h.Extensions)-1], "two GREASE values")
		orders[fmt.Sprint(h.Extensions[1:len(h.Extensions)-1])] = true
	}
	assert.Greater(t, len(orders), 1, "the order changes between handshakes")
	assert.Greater(t, len(sizes), 1, "so does the ECH GREASE payload's size")

	want := parseRecord(t, firefox153Hello)
	for range 3 {
		h := profileHello(t, firefox)
		assert.Equal(t, want.Extensions, h.Extensions, "Firefox's order")
		assert.Equal(t, want.CipherSuites, h.CipherSuites)
		assert.Equal(t, want.SupportedGroups, h.SupportedGroups)
		assert.Equal(t, "shop.example", h.ServerName)
	}
	a, b := profileHello(t, chrome), profileHello(t, chrome)
	assert.NotEqual(t, a.Raw, b.Raw, "fresh random, key shares and GREASE per handshake")
}

// A recorded ClientHello's key shares (X25519MLKEM768 first) and ECH
// GREASE complete a handshake with Go's TLS server, which picks the
// post-quantum group.
func TestRecordedHellosHandshake(t *testing.T) {
	pki := newOriginPKI(t, testNames...)
	for _, name := range []string{"chrome", "firefox"} {
		t.Run(name, func(t *testing.T) {
			p := profile(t, name)
			c, s := net.Pipe()
			defer c.Close()
			defer s.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{pki.cert}, NextProtos: []string{"h2", "http/1.1"}})
			done := make(chan error, 1)
			go func() { done <- srv.HandshakeContext(ctx) }()
			spec, err := p.HelloSpec()
			require.NoError(t, err)
			uc := utls.UClient(c, &utls.Config{ServerName: "shop.example", RootCAs: pki.pool}, utls.HelloCustom)
			require.NoError(t, uc.ApplyPreset(spec))
			require.NoError(t, uc.HandshakeContext(ctx))
			require.NoError(t, <-done)
			assert.Equal(t, "h2", uc.ConnectionState().NegotiatedProtocol)
			st := srv.ConnectionState()
			assert.Equal(t, uint16(tls.VersionTLS13), st.Version)
			assert.Equal(t, tls.X25519MLKEM768, st.CurveID, "the post-quantum key share")
		})
	}
}
