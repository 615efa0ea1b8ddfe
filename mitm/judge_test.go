package mitm

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/fingerprint"
	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/judge"
)

// startJudge serves `hopper judge`'s TLS port on 127.0.0.1:0 as an origin,
// with the test origin PKI's certificate (so hopper verifies it for real),
// accepting protos (nil: h2 and http/1.1). It reports, as JSON, the JA4,
// HTTP/2 fingerprint and header order of every request.
func startJudge(t testing.TB, pki *originPKI, protos []string) string {
	t.Helper()
	ln := testnet.Listen(t, "")
	s := &judge.Server{Logger: zaptest.NewLogger(t).Named("judge"), Certificate: &pki.cert, TLSNextProtos: protos, ShutdownTimeout: time.Second}
	testnet.Go(t, "judge", func(ctx context.Context) error { return s.ServeTLS(ctx, ln) })
	return ln.Addr().String()
}

// newJudgeWorld is client → front end → Interceptor → judge.
func newJudgeWorld(t testing.TB, pki *originPKI, protos []string, cfg func(*Config)) (*world, string) {
	t.Helper()
	addr := startJudge(t, pki, protos)
	w := &world{ca: testCA(t), pki: pki, dialer: newTestDialer(addr)}
	c := Config{CA: w.ca, Dialer: w.dialer, RootCAs: pki.pool, Logger: zaptest.NewLogger(t)}
	if cfg != nil {
		cfg(&c)
	}
	ic, err := New(c)
	require.NoError(t, err)
	w.ic = ic
	w.fe = newFrontEnd(t, ic, w.dialer)
	return w, addr
}

func report(t testing.TB, resp *http.Response) judge.Report {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var rep judge.Report
	require.NoError(t, json.Unmarshal(body, &rep), "%s", body)
	return rep
}

func lower(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ToLower(n)
	}
	return out
}

// ordered reports whether names (lower case) follow order: every listed
// name in the order's sequence, unlisted ones at its "*".
func ordered(t *testing.T, order, names []string) {
	t.Helper()
	pos := func(n string) int {
		if i := slices.Index(order, n); i >= 0 {
			return i
		}
		return slices.Index(order, "*")
	}
	for i := 1; i < len(names); i++ {
		assert.LessOrEqual(t, pos(names[i-1]), pos(names[i]), "%s comes before %s in %v", names[i-1], names[i], names)
	}
}

func TestEveryProfileIsConsistent(t *testing.T) {
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			assert.Equal(t, p.Akamai, p.HTTP2.Akamai(), "Akamai is what the preface makes")
			spec, err := p.helloSpec()
			require.NoError(t, err)
			assert.NotEmpty(t, spec.CipherSuites)
			assert.Equal(t, p.JA4, profileHello(t, &p).JA4(), "JA4 is what the ClientHello makes")
			for _, h := range p.Headers {
				assert.Contains(t, p.HeaderOrder, strings.ToLower(h.Name), "the order places %s", h.Name)
			}
			assert.Contains(t, p.HeaderOrder, "*")
			assert.Equal(t, uint32(1), p.HTTP2.FirstStreamID%2, "client streams are odd")
			// The User-Agent names the browser version of the ClientHello.
			version := strings.Fields(p.Browser)[1]
			assert.Contains(t, p.Header("User-Agent"), version, "User-Agent of %s", p.Browser)
		})
	}
}

// The ClientHello, HTTP/2 preface and header order an origin sees are the
// profile's, for every built-in profile, over HTTP/2 and HTTP/1.1.
func TestOriginSeesEachProfilesFingerprint(t *testing.T) {
	pki := newOriginPKI(t, testNames...)
	for _, p := range Profiles() {
		for _, proto := range []string{"h2", "http/1.1"} {
			t.Run(p.Name+" "+proto, func(t *testing.T) {
				w, _ := newJudgeWorld(t, pki, []string{proto}, func(c *Config) { c.Profile, c.RequestsPerDial = p.Name, -1 })
				c := w.client(t, true)
				rep := report(t, do(t, c, http.MethodGet, "https://shop.example/nav", nil, "User-Agent", "curl/8", "Accept", "*/*"))
				require.NotNil(t, rep.TLS)
				assert.Equal(t, p.JA4, rep.TLS.JA4, "JA4")
				assert.Equal(t, proto, rep.TLS.Protocol)
				assert.Equal(t, p.Header("User-Agent"), rep.Headers["User-Agent"][0])
				navOrder := lower(rep.HeaderOrder)
				if proto == "h2" {
					require.NotNil(t, rep.HTTP2)
					assert.Equal(t, p.Akamai, rep.HTTP2.Akamai, "Akamai fingerprint")
					assert.Equal(t, p.HTTP2.PseudoHeaderOrder, rep.HTTP2.PseudoHeaderOrder)
					assert.Equal(t, p.HTTP2.FirstStreamID, rep.HTTP2.StreamID, "the first request's stream")
					if hp := p.HTTP2.HeadersPriority; hp != nil {
						want := *hp
						want.StreamID = p.HTTP2.FirstStreamID
						assert.Equal(t, want.String(), rep.HTTP2.HeadersPriority)
					} else {
						assert.Empty(t, rep.HTTP2.HeadersPriority)
					}
					for _, n := range rep.HeaderOrder {
						assert.Equal(t, strings.ToLower(n), n, "HTTP/2 names are lower case")
					}
				} else {
					assert.Nil(t, rep.HTTP2)
					assert.Equal(t, "Host", rep.HeaderOrder[0])
					for _, h := range p.Headers {
						if !h.HTTP2Only {
							assert.Contains(t, rep.HeaderOrder, h.Name, "spelled as the browser does")
						}
					}
				}
				ordered(t, p.HeaderOrder, navOrder)
				for _, h := range p.Headers {
					if h.HTTP2Only && proto != "h2" {
						assert.NotContains(t, navOrder, strings.ToLower(h.Name))
					} else {
						assert.Contains(t, navOrder, strings.ToLower(h.Name))
					}
				}

				// A fetch with headers of the client's own follows the fetch
				// order, the client's fields placed where the browser puts
				// them.
				rep = report(t, do(t, c, http.MethodPost, "https://shop.example/api", strings.NewReader(`{"a":1}`),
					"Content-Type", "application/json", "X-Custom", "1", "Origin", "https://shop.example",
					"Referer", "https://shop.example/nav", "Accept", "application/json"))
				fetch := p.FetchHeaderOrder
				if fetch == nil {
					fetch = p.HeaderOrder
				}
				ordered(t, fetch, lower(rep.HeaderOrder))
				assert.Contains(t, lower(rep.HeaderOrder), "content-length")
				assert.Contains(t, lower(rep.HeaderOrder), "x-custom")
				if proto == "h2" {
					assert.Equal(t, p.HTTP2.FirstStreamID+2, rep.HTTP2.StreamID, "the same connection's next stream")
				}
			})
		}
	}
}

// Chrome's header orders, as Chromium sent them to the judge: a typed-in
// navigation and a fetch() POST with a header of its own.
func TestChromeOrdersAreChromiums(t *testing.T) {
	pki := newOriginPKI(t, testNames...)
	for _, tc := range []struct {
		proto    string
		nav, xhr []string
	}{
		{"h2",
			[]string{"sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform", "upgrade-insecure-requests", "user-agent", "accept",
				"sec-fetch-site", "sec-fetch-mode", "sec-fetch-user", "sec-fetch-dest", "accept-encoding", "accept-language", "priority"},
			[]string{"content-length", "x-custom", "sec-ch-ua-platform", "user-agent", "sec-ch-ua", "content-type", "sec-ch-ua-mobile",
				"accept", "origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "referer", "accept-encoding", "accept-language", "cookie"}},
		{"http/1.1",
			[]string{"Host", "Connection", "sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform", "Upgrade-Insecure-Requests", "User-Agent", "Accept",
				"Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-User", "Sec-Fetch-Dest", "Accept-Encoding", "Accept-Language"},
			[]string{"Host", "Connection", "Content-Length", "X-Custom", "sec-ch-ua-platform", "User-Agent", "sec-ch-ua", "Content-Type", "sec-ch-ua-mobile",
				"Accept", "Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest", "Referer", "Accept-Encoding", "Accept-Language", "Cookie"}},
	} {
		t.Run(tc.proto, func(t *testing.T) {
			w, _ := newJudgeWorld(t, pki, []string{tc.proto}, func(c *Config) { c.Profile = "chrome"; c.PassClientCookies = true })
			c := w.client(t, true)
			rep := report(t, do(t, c, http.MethodGet, "https://shop.example/", nil))
			assert.Equal(t, tc.nav, rep.HeaderOrder)
			rep = report(t, do(t, c, http.MethodPost, "https://shop.example/xhr", strings.NewReader("{}"),
				"Cookie", "a=b", "Referer", "https://shop.example/", "Content-Type", "application/json", "Origin", "https://shop.example",
				"Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "cors", "Sec-Fetch-Dest", "empty", "X-Custom", "1", "Accept", "*/*"))
			assert.Equal(t, tc.xhr, rep.HeaderOrder)
		})
	}
}

// do sends one request with headers (name, value pairs).
func do(t testing.TB, c *http.Client, method, url string, body io.Reader, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	return resp
}

// chromeLike is a raw HTTP/2 client's preface as Chrome sends it.
var chromeLike = fingerprint.HTTP2{
	Settings:          []fingerprint.Setting{{ID: 1, Value: 65536}, {ID: 2, Value: 0}, {ID: 4, Value: 6291456}, {ID: 6, Value: 262144}},
	WindowUpdate:      15663105,
	HeadersPriority:   &fingerprint.Priority{Exclusive: true, Weight: 255},
	PseudoHeaderOrder: []string{":method", ":authority", ":scheme", ":path"},
	FirstStreamID:     1,
}

// rawH2Get sends one GET as a raw HTTP/2 client with preface pre and the
// header fields in order, and returns the judge's report.
func rawH2Get(t *testing.T, conn net.Conn, pre fingerprint.HTTP2, fields [][2]string) judge.Report {
	t.Helper()
	body := testnet.H2Get(t, conn, pre, "shop.example", "/raw", fields)
	var rep judge.Report
	require.NoError(t, json.Unmarshal(body, &rep), "%s", body)
	return rep
}

// With the mirror profile, a uTLS client posing as Chrome shows the judge
// the same ClientHello, HTTP/2 preface and header order through hopper as
// it does connecting straight to it.
func TestMirrorCopiesTheClientsFingerprint(t *testing.T) {
	pki := newOriginPKI(t, testNames...)
	w, judgeAddr := newJudgeWorld(t, pki, nil, func(c *Config) { c.Profile = ProfileMirror })
	fields := [][2]string{{"sec-ch-ua", `"Chromium";v="133"`}, {"user-agent", "Mozilla/5.0 mirror test"},
		{"accept", "text/html"}, {"x-b", "2"}, {"x-a", "1"}, {"accept-language", "de"}, {"hopper-session", "s1"}}
	visit := func(conn net.Conn, roots *utls.Config) (judge.Report, string) {
		uc := utls.UClient(conn, roots, utls.HelloChrome_133)
		require.NoError(t, uc.BuildHandshakeState())
		hello, err := fingerprint.ParseClientHello(uc.HandshakeState.Hello.Raw)
		require.NoError(t, err)
		require.NoError(t, uc.Handshake())
		require.Equal(t, "h2", uc.ConnectionState().NegotiatedProtocol)
		return rawH2Get(t, uc, chromeLike, fields), hello.JA4()
	}

	direct, err := net.Dial("tcp", judgeAddr)
	require.NoError(t, err)
	defer direct.Close()
	want, sentJA4 := visit(direct, &utls.Config{ServerName: "shop.example", RootCAs: pki.pool})
	require.NotNil(t, want.TLS)
	require.Equal(t, sentJA4, want.TLS.JA4)

	got, _ := visit(connectThrough(t, w, "shop.example:443"), &utls.Config{ServerName: "shop.example", RootCAs: w.ca.CertPool()})
	require.NotNil(t, got.TLS)
	assert.Equal(t, want.TLS.JA4, got.TLS.JA4, "JA4 through hopper")
	assert.Equal(t, want.TLS.ALPN, got.TLS.ALPN)
	require.NotNil(t, got.HTTP2)
	assert.Equal(t, want.HTTP2.Akamai, got.HTTP2.Akamai, "HTTP/2 fingerprint through hopper")
	assert.Equal(t, chromeLike.Akamai(), got.HTTP2.Akamai)
	assert.Equal(t, want.HTTP2.HeadersPriority, got.HTTP2.HeadersPriority)
	assert.Equal(t, want.HTTP2.PseudoHeaderOrder, got.HTTP2.PseudoHeaderOrder)
	wantOrder := slices.DeleteFunc(slices.Clone(want.HeaderOrder), func(n string) bool { return n == "hopper-session" })
	assert.Equal(t, wantOrder, got.HeaderOrder, "the client's own header order, less hopper's controls")
	assert.Equal(t, []string{"Mozilla/5.0 mirror test"}, got.Headers["User-Agent"], "the client's own User-Agent")

	id := w.ic.Identity("direct@127.0.0.1", "shop.example")
	require.NotNil(t, id, "an identity per exit still holds the cookies")
	assert.True(t, id.Profile.Mirror())
}

func TestMirrorFailsClosedOnAHelloItCannotCopy(t *testing.T) {
	_, err := mirrorSpec([]byte{0x16, 0x03, 0x01, 0x00, 0x01, 0x02})
	assert.ErrorIs(t, err, ErrMirror)
}

func TestMirrorIsAProfileName(t *testing.T) {
	c := Config{Profile: ProfileMirror, ProfileRules: []ProfileRule{{Host: "*.example", Profile: "chrome"}}}
	require.NoError(t, c.ValidateOptions())
	c = Config{Profile: "chrome", ProfileRules: []ProfileRule{{Host: "*.example", Profile: ProfileMirror}}}
	require.NoError(t, c.ValidateOptions())
	c = Config{Profile: "mirr0r"}
	err := c.ValidateOptions()
	require.ErrorIs(t, err, ErrUnknownProfile)
	assert.Contains(t, err.Error(), ProfileMirror, "the message lists mirror among the choices")
	assert.NotContains(t, ProfileNames(), ProfileMirror, "mirror is no random choice")
}

// A profile may carry a whole ClientHelloSpec instead of a uTLS ID: the
// origin sees that spec's JA4, and the rest of the profile as usual.
func TestProfileWithAClientHelloSpec(t *testing.T) {
	pki := newOriginPKI(t, testNames...)
	w, addr := newJudgeWorld(t, pki, nil, nil)
	p := *profile(t, "firefox120")
	p.Name, p.HelloID = "firefox-spec", utls.ClientHelloID{}
	p.HelloSpec = func() (*utls.ClientHelloSpec, error) {
		spec, err := utls.UTLSIdToSpec(utls.HelloFirefox_120)
		return &spec, err
	}
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	uc, err := w.ic.originTLS(ctx, raw, &p, "shop.example", false)
	require.NoError(t, err)
	require.Equal(t, "h2", uc.ConnectionState().NegotiatedProtocol)
	oc, err := newH2Client(time.Minute).NewConn(uc, &p)
	require.NoError(t, err)
	defer oc.Close()
	req := newReq(t, ctx, http.MethodGet, "https://shop.example/spec", nil)
	applyProfile(req.Header, &p, req.Method, true)
	resp, err := oc.RoundTrip(req)
	require.NoError(t, err)
	rep := report(t, resp)
	assert.Equal(t, p.JA4, rep.TLS.JA4)
	assert.Equal(t, p.Akamai, rep.HTTP2.Akamai)
	ordered(t, p.HeaderOrder, rep.HeaderOrder)
}
