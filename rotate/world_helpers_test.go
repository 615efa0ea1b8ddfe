package rotate

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/dial"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

// echoOrigin greets every connection with "from=IP\n" (the source address
// it saw) and then echoes what it reads.
type echoOrigin struct {
	addr string
}

func startEchoOrigin(t testing.TB) *echoOrigin { return startOrigin(t, false) }

// startQuietOrigin echoes without a greeting.
func startQuietOrigin(t testing.TB) *echoOrigin { return startOrigin(t, true) }

func startOrigin(t testing.TB, quiet bool) *echoOrigin {
	srv := testnet.Serve(t, testnet.Listen(t, ""), func(c net.Conn) {
		if !quiet {
			ip := c.RemoteAddr().(*net.TCPAddr).IP.String()
			if _, err := io.WriteString(c, "from="+ip+"\n"); err != nil {
				return
			}
		}
		_, _ = io.Copy(c, c)
	})
	return &echoOrigin{addr: srv.Addr()}
}

// startHTTPOrigin answers every request with the source address it saw.
func startHTTPOrigin(t testing.TB) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		_, _ = io.WriteString(w, host)
	}))
	t.Cleanup(s.Close)
	return s
}

// readFrom reads the origin's greeting and returns the source address.
func readFrom(t testing.TB, c net.Conn) string {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Time{}))
	src, ok := strings.CutPrefix(strings.TrimSpace(line), "from=")
	require.True(t, ok, "greeting %q", line)
	return src
}

// newTestPool builds a pool over entries (list syntax).
func newTestPool(t testing.TB, cfg Config, entries ...string) *Pool {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	p, err := New(cfg, mustUpstreams(t, entries...))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func mustUpstreams(t testing.TB, entries ...string) []*Upstream {
	t.Helper()
	ups := make([]*Upstream, 0, len(entries))
	for _, s := range entries {
		e, err := ParseEntry(s)
		require.NoError(t, err, s)
		ups = append(ups, NewUpstream(e))
	}
	return ups
}

// dialSource dials target through p and returns the source address the echo
// origin reports, closing the connection.
func dialSource(t testing.TB, p *Pool, req *dial.Request) (string, *dial.Outbound) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := p.Dial(ctx, req)
	require.NoError(t, err)
	src := readFrom(t, out.Conn)
	out.Done(false)
	return src, out
}

// testCA returns a server TLS config with a leaf for 127.0.0.0/26 and
// localhost, and the pool of roots that trusts it.
func testCA(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "rotate test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "proxy"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for i := 1; i < 64; i++ {
		leafTmpl.IPAddresses = append(leafTmpl.IPAddresses, net.IPv4(127, 0, 0, byte(i)))
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}, roots
}

// refusingAddr returns an address on ip where nothing listens.
func refusingAddr(t testing.TB, ip string) string {
	t.Helper()
	return testnet.RefusingAddr(t, ip)
}
