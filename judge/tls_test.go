package judge

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/fingerprint"
	"github.com/hopper-proxy/hopper/internal/testnet"
)

// tlsJudge is a judge's TLS port on 127.0.0.1:0 with a certificate for
// judge.test that clients trust through pool.
type tlsJudge struct {
	addr string
	pool *x509.CertPool
	pem  []byte
}

func startTLSJudge(t *testing.T) *tlsJudge {
	t.Helper()
	cert, err := SelfSigned(time.Now(), "judge.test", "127.0.0.1")
	require.NoError(t, err)
	ln := testnet.Listen(t, "")
	s := &Server{Logger: zaptest.NewLogger(t), Certificate: &cert, ShutdownTimeout: time.Second}
	testnet.Go(t, "TLS judge", func(ctx context.Context) error { return s.ServeTLS(ctx, ln) })
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return &tlsJudge{addr: ln.Addr().String(), pool: pool,
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Leaf.Raw})}
}

// dialer connects any address to the judge.
func (j *tlsJudge) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, "tcp", j.addr)
}

func decode(t *testing.T, body []byte) Report {
	t.Helper()
	var rep Report
	require.NoError(t, json.Unmarshal(body, &rep), "%s", body)
	return rep
}

func TestTLSReportsJA4AndHTTP2Fingerprint(t *testing.T) {
	j := startTLSJudge(t)
	for _, tc := range []struct {
		name  string
		hello utls.ClientHelloID
		pre   fingerprint.HTTP2
	}{
		{"chrome", utls.HelloChrome_133, fingerprint.HTTP2{
			Settings:          []fingerprint.Setting{{ID: 1, Value: 65536}, {ID: 2, Value: 0}, {ID: 4, Value: 6291456}, {ID: 6, Value: 262144}},
			WindowUpdate:      15663105,
			HeadersPriority:   &fingerprint.Priority{Exclusive: true, Weight: 255},
			PseudoHeaderOrder: []string{":method", ":authority", ":scheme", ":path"},
			FirstStreamID:     1,
		}},
		{"firefox", utls.HelloFirefox_120, fingerprint.HTTP2{
			Settings:          []fingerprint.Setting{{ID: 1, Value: 65536}, {ID: 4, Value: 131072}, {ID: 5, Value: 16384}},
			WindowUpdate:      12517377,
			Priorities:        []fingerprint.Priority{{StreamID: 3, Weight: 200}, {StreamID: 13, Weight: 240}},
			HeadersPriority:   &fingerprint.Priority{DependsOn: 13, Weight: 41},
			PseudoHeaderOrder: []string{":method", ":path", ":authority", ":scheme"},
			FirstStreamID:     15,
		}},
		{"no window update", utls.HelloSafari_16_0, fingerprint.HTTP2{
			Settings:          []fingerprint.Setting{{ID: 4, Value: 4194304}, {ID: 3, Value: 100}},
			PseudoHeaderOrder: []string{":method", ":scheme", ":path", ":authority"},
			FirstStreamID:     1,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := net.Dial("tcp", j.addr)
			require.NoError(t, err)
			defer raw.Close()
			uc := utls.UClient(raw, &utls.Config{ServerName: "judge.test", RootCAs: j.pool}, tc.hello)
			require.NoError(t, uc.BuildHandshakeState())
			hello, err := fingerprint.ParseClientHello(uc.HandshakeState.Hello.Raw)
			require.NoError(t, err)
			require.NoError(t, uc.Handshake())
			require.Equal(t, "h2", uc.ConnectionState().NegotiatedProtocol)

			rep := decode(t, testnet.H2Get(t, uc, tc.pre, "judge.test", "/h2?x=1", [][2]string{{"user-agent", "raw"}, {"accept", "*/*"}, {"x-b", "2"}, {"x-a", "1"}}))
			require.NotNil(t, rep.TLS)
			assert.Equal(t, hello.JA4(), rep.TLS.JA4)
			assert.Equal(t, hello.JA4R(), rep.TLS.JA4R)
			assert.Equal(t, "judge.test", rep.TLS.ServerName)
			assert.Equal(t, []string{"h2", "http/1.1"}, rep.TLS.ALPN)
			assert.Equal(t, "h2", rep.TLS.Protocol)
			assert.Equal(t, "TLS 1.3", rep.TLS.Version)
			require.NotNil(t, rep.HTTP2)
			assert.Equal(t, tc.pre.Akamai(), rep.HTTP2.Akamai)
			assert.Equal(t, tc.pre.PseudoHeaderOrder, rep.HTTP2.PseudoHeaderOrder)
			assert.Equal(t, tc.pre.FirstStreamID, rep.HTTP2.StreamID)
			if tc.pre.HeadersPriority != nil {
				p := *tc.pre.HeadersPriority
				p.StreamID = tc.pre.FirstStreamID
				assert.Equal(t, p.String(), rep.HTTP2.HeadersPriority)
			} else {
				assert.Empty(t, rep.HTTP2.HeadersPriority)
			}
			assert.Equal(t, []string{"user-agent", "accept", "x-b", "x-a"}, rep.HeaderOrder)
			assert.Equal(t, "/h2?x=1", rep.URI)
			assert.Equal(t, "HTTP/2.0", rep.Proto)
		})
	}
}

func TestTLSOverHTTP1AndRepeatedRequests(t *testing.T) {
	j := startTLSJudge(t)
	tr := &http.Transport{
		DialContext:     j.dial,
		TLSClientConfig: &tls.Config{RootCAs: j.pool, NextProtos: []string{"http/1.1"}},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var ja4 string
	for i := range 3 { // one keep-alive connection, three requests
		req, err := http.NewRequest(http.MethodPost, "https://judge.test/p", bytes.NewReader([]byte("body")))
		require.NoError(t, err)
		req.Header.Set("X-Second", "2")
		req.Header.Set("A-First", "1")
		resp, err := c.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		rep := decode(t, body)
		require.NotNil(t, rep.TLS, "request %d", i)
		assert.Nil(t, rep.HTTP2)
		assert.Equal(t, "http/1.1", rep.TLS.Protocol)
		assert.Equal(t, []string{"http/1.1"}, rep.TLS.ALPN)
		if i == 0 {
			ja4 = rep.TLS.JA4
		}
		assert.Equal(t, ja4, rep.TLS.JA4, "the connection's ClientHello")
		// Go writes Host, User-Agent, Content-Length, then the rest sorted.
		assert.Equal(t, []string{"Host", "User-Agent", "Content-Length", "A-First", "X-Second", "Accept-Encoding"}, rep.HeaderOrder)
	}
	assert.Regexp(t, `^t13d\d{4}h1_[0-9a-f]{12}_[0-9a-f]{12}$`, ja4)
}

func TestTLSWithCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl not installed: make test installs it (.ci/deps)")
	}
	j := startTLSJudge(t)
	caFile := filepath.Join(t.TempDir(), "judge.pem")
	require.NoError(t, os.WriteFile(caFile, j.pem, 0o644))
	_, port, _ := net.SplitHostPort(j.addr)
	for _, tc := range []struct {
		flag  string
		proto string
	}{{"--http1.1", "HTTP/1.1"}, {"--http2", "HTTP/2.0"}} {
		t.Run(tc.flag, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "curl", "-sS", tc.flag, "--cacert", caFile,
				"--resolve", "judge.test:"+port+":127.0.0.1", "-H", "X-Hello: 1", "https://judge.test:"+port+"/c").Output()
			require.NoError(t, err)
			rep := decode(t, out)
			assert.Equal(t, tc.proto, rep.Proto)
			require.NotNil(t, rep.TLS)
			assert.Regexp(t, `^t1[23]d\d{4}h[12]_[0-9a-f]{12}_[0-9a-f]{12}$`, rep.TLS.JA4)
			assert.Equal(t, "judge.test", rep.TLS.ServerName)
			if tc.proto == "HTTP/2.0" {
				require.NotNil(t, rep.HTTP2)
				assert.Equal(t, []string{"user-agent", "accept", "x-hello"}, rep.HeaderOrder)
				assert.Regexp(t, `^[0-9:;]+\|\d+\|0\|m,p,s,a$`, rep.HTTP2.Akamai, "curl's pseudo-header order")
			} else {
				assert.Equal(t, []string{"Host", "User-Agent", "Accept", "X-Hello"}, rep.HeaderOrder)
			}
		})
	}
}

func TestTLSPortDropsWhatIsNotTLS(t *testing.T) {
	j := startTLSJudge(t)
	c, err := net.Dial("tcp", j.addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	n, err := c.Read(make([]byte, 1))
	assert.Zero(t, n)
	assert.ErrorIs(t, err, io.EOF, "closed without an answer")
}

func TestSelfSignedCoversItsNames(t *testing.T) {
	cert, err := SelfSigned(time.Now())
	require.NoError(t, err)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		assert.NoError(t, cert.Leaf.VerifyHostname(name), name)
	}
	assert.Error(t, cert.Leaf.VerifyHostname("example.com"))
}
