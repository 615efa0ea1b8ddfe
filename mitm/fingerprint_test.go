package mitm

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/fingerprint"
)

// helloSummary is the part of a ClientHello a fingerprint (JA3/JA4) is made
// of, with GREASE values dropped, and extensions as a sorted set (Chrome
// shuffles their order per connection) without padding (its presence
// depends on the hello's length).
type helloSummary struct {
	Ciphers    []uint16
	Extensions []uint16
	ALPN       []string
}

const extPadding = 21

func summarize(ciphers, exts []uint16, alpn []string) helloSummary {
	s := helloSummary{ALPN: alpn}
	for _, c := range ciphers {
		if !fingerprint.IsGREASE(c) {
			s.Ciphers = append(s.Ciphers, c)
		}
	}
	for _, e := range exts {
		if !fingerprint.IsGREASE(e) && e != extPadding {
			s.Extensions = append(s.Extensions, e)
		}
	}
	slices.Sort(s.Extensions)
	return s
}

// profileHello builds the ClientHello hopper sends an origin for p, as
// originTLS does: p's HelloSpec, or uTLS's parrot for its HelloID.
func profileHello(t testing.TB, p *Profile) *fingerprint.ClientHello {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cfg := &utls.Config{ServerName: "shop.example"}
	var uc *utls.UConn
	if p.HelloSpec != nil {
		spec, err := p.HelloSpec()
		require.NoError(t, err)
		uc = utls.UClient(a, cfg, utls.HelloCustom)
		require.NoError(t, uc.ApplyPreset(spec))
	} else {
		uc = utls.UClient(a, cfg, p.HelloID)
	}
	require.NoError(t, uc.BuildHandshakeState())
	h, err := fingerprint.ParseClientHello(uc.HandshakeState.Hello.Raw)
	require.NoError(t, err)
	return h
}

// expectedHello summarizes the ClientHello hopper sends for p.
func expectedHello(t testing.TB, p *Profile) helloSummary {
	t.Helper()
	h := profileHello(t, p)
	return summarize(h.CipherSuites, h.Extensions, h.ALPN)
}

func TestOriginSeesTheProfilesClientHello(t *testing.T) {
	pki := newOriginPKI(t, testNames...)
	goHello, curlHello := referenceHellos(t, pki)
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			for _, h2 := range []bool{false, true} {
				w := newWorld(t, echo(), worldOpts{h2: h2, pki: pki, cfg: func(c *Config) { c.Profile = p.Name }})
				resp, body := get(t, w.client(t, true), "https://shop.example/")
				require.Equal(t, 200, resp.StatusCode, body)
				hellos := w.origin.Hellos()
				require.Len(t, hellos, 1)
				got := summarize(hellos[0].Ciphers, hellos[0].Extensions, hellos[0].ALPN)
				want := expectedHello(t, &p)
				assert.Equal(t, want.Ciphers, got.Ciphers, "cipher suites, in order")
				assert.Equal(t, want.Extensions, got.Extensions, "extension set")
				assert.Equal(t, want.ALPN, got.ALPN, "ALPN as the browser offers it")
				assert.Contains(t, got.ALPN, "h2", "h2 is never stripped")
				assert.Equal(t, "shop.example", hellos[0].ServerName)

				assert.NotEqual(t, goHello.Ciphers, got.Ciphers, "differs from Go's ClientHello")
				assert.NotEqual(t, curlHello.Ciphers, got.Ciphers, "differs from curl's ClientHello")
				assert.NotEqual(t, goHello.Extensions, got.Extensions)
				assert.NotEqual(t, curlHello.Extensions, got.Extensions)

				wantProto := "HTTP/1.1"
				if h2 {
					wantProto = "HTTP/2.0"
				}
				reqs := w.origin.Requests()
				require.Len(t, reqs, 1)
				assert.Equal(t, wantProto, reqs[0].Proto, "the origin's ALPN choice is followed")
				assert.Equal(t, p.Header("User-Agent"), reqs[0].Header.Get("User-Agent"))
			}
		})
	}
}

// referenceHellos records the ClientHellos of Go's default TLS client and of
// curl, each connecting straight to an origin.
func referenceHellos(t *testing.T, pki *originPKI) (goHello, curlHello helloSummary) {
	o := newOrigin(t, pki, true, echo())
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}, ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", o.addr())
		}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://shop.example/")
	require.NoError(t, err)
	resp.Body.Close()

	caFile := writeFile(t, t.TempDir(), "origin-ca.pem", pki.pem)
	_, port, _ := net.SplitHostPort(o.addr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", "-sS", "--cacert", caFile,
		"--resolve", "shop.example:"+port+":127.0.0.1", "https://shop.example:"+port+"/").CombinedOutput()
	require.NoError(t, err, "%s", out)

	hellos := o.Hellos()
	require.Len(t, hellos, 2)
	return summarize(hellos[0].Ciphers, hellos[0].Extensions, hellos[0].ALPN),
		summarize(hellos[1].Ciphers, hellos[1].Extensions, hellos[1].ALPN)
}

func TestEveryProfileOffersH2AndHTTP1(t *testing.T) {
	for _, p := range Profiles() {
		s := expectedHello(t, &p)
		assert.NotEmpty(t, s.Ciphers, p.Name)
		assert.NotEmpty(t, s.Extensions, p.Name)
		assert.Equal(t, []string{"h2", "http/1.1"}, s.ALPN, p.Name)
	}
}
