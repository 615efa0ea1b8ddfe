package mitm

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

const extPadding = 21

func summarize(ciphers, exts []uint16, alpn []string) helloSummary {
	s := helloSummary{ALPN: alpn}
	for _, c := range ciphers {
		if !isGREASE(c) {
			s.Ciphers = append(s.Ciphers, c)
		}
	}
	for _, e := range exts {
		if !isGREASE(e) && e != extPadding {
			s.Extensions = append(s.Extensions, e)
		}
	}
	slices.Sort(s.Extensions)
	return s
}

var errShortHello = errors.New("short ClientHello")

// parseClientHello reads a ClientHello handshake message (RFC 8446 §4.1.2,
// without the record header): its cipher suites, extension types in order
// and ALPN protocols.
func parseClientHello(msg []byte) (ciphers, exts []uint16, alpn []string, err error) {
	b := msg
	take := func(n int) []byte {
		if err != nil || len(b) < n {
			err = errShortHello
			return nil
		}
		v := b[:n]
		b = b[n:]
		return v
	}
	u8 := func() int {
		v := take(1)
		if v == nil {
			return 0
		}
		return int(v[0])
	}
	u16 := func() int {
		v := take(2)
		if v == nil {
			return 0
		}
		return int(binary.BigEndian.Uint16(v))
	}
	if u8() != 1 {
		return nil, nil, nil, fmt.Errorf("not a ClientHello")
	}
	take(3)  // length
	take(2)  // legacy version
	take(32) // random
	take(u8())
	cs := take(u16())
	for i := 0; i+1 < len(cs); i += 2 {
		ciphers = append(ciphers, binary.BigEndian.Uint16(cs[i:]))
	}
	take(u8()) // compression methods
	if len(b) == 0 || err != nil {
		return ciphers, nil, nil, err
	}
	extBytes := take(u16())
	for len(extBytes) >= 4 && err == nil {
		typ := binary.BigEndian.Uint16(extBytes)
		n := int(binary.BigEndian.Uint16(extBytes[2:]))
		if len(extBytes) < 4+n {
			return nil, nil, nil, errShortHello
		}
		data := extBytes[4 : 4+n]
		extBytes = extBytes[4+n:]
		exts = append(exts, typ)
		if typ == 16 && len(data) >= 2 { // ALPN
			list := data[2:]
			for len(list) > 0 {
				l := int(list[0])
				if len(list) < 1+l {
					return nil, nil, nil, errShortHello
				}
				alpn = append(alpn, string(list[1:1+l]))
				list = list[1+l:]
			}
		}
	}
	return ciphers, exts, alpn, err
}

// expectedHello builds the ClientHello uTLS sends for id and summarizes it.
func expectedHello(t testing.TB, id utls.ClientHelloID) helloSummary {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	uc := utls.UClient(a, &utls.Config{ServerName: "shop.example"}, id)
	require.NoError(t, uc.BuildHandshakeState())
	c, e, alpn, err := parseClientHello(uc.HandshakeState.Hello.Raw)
	require.NoError(t, err)
	return summarize(c, e, alpn)
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
				want := expectedHello(t, p.HelloID)
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

func TestParseClientHelloRoundTrip(t *testing.T) {
	for _, p := range Profiles() {
		s := expectedHello(t, p.HelloID)
		assert.NotEmpty(t, s.Ciphers, p.Name)
		assert.NotEmpty(t, s.Extensions, p.Name)
		assert.Equal(t, []string{"h2", "http/1.1"}, s.ALPN, p.Name)
	}
	_, _, _, err := parseClientHello([]byte{1, 0, 0})
	require.ErrorIs(t, err, errShortHello)
}

func FuzzParseClientHello(f *testing.F) {
	for _, p := range Profiles() {
		a, b := net.Pipe()
		uc := utls.UClient(a, &utls.Config{ServerName: "x.example"}, p.HelloID)
		if err := uc.BuildHandshakeState(); err == nil {
			f.Add(uc.HandshakeState.Hello.Raw)
		}
		a.Close()
		b.Close()
	}
	f.Add([]byte{1, 0, 0, 4, 3, 3})
	f.Fuzz(func(t *testing.T, msg []byte) {
		ciphers, exts, alpn, err := parseClientHello(msg)
		if err != nil {
			return
		}
		// Every value parsed came from inside the message.
		if 2*len(ciphers)+4*len(exts) > len(msg) {
			t.Fatalf("parsed more than the message holds")
		}
		for _, a := range alpn {
			if !strings.Contains(string(msg), a) {
				t.Fatalf("ALPN %q not in the message", a)
			}
		}
	})
}
