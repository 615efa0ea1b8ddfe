package check

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/judge"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	return testnet.RefusingAddr(t, "127.0.0.1")
}

// startJudge runs a real judge.Server on 127.0.0.1 and returns its URL.
func startJudge(t *testing.T) string {
	t.Helper()
	return serveHandler(t, testnet.Listen(t, ""), nil)
}

// startLyingJudge is a judge that answers properly to requests from
// 127.0.0.1 (a direct fetch) and with an HTML page to anything else (through
// a proxy), as a captive portal would.
func startLyingJudge(t *testing.T) string {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, _ := net.SplitHostPort(r.RemoteAddr); host == "127.0.0.1" {
			judge.Handler().ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<html><body>Please log in to the network</body></html>")
	})
	return serveHandler(t, testnet.Listen(t, ""), h)
}

// serveHandler serves h (nil: judge.Server) on ln until cleanup.
func serveHandler(t *testing.T, ln net.Listener, h http.Handler) string {
	if h == nil {
		testnet.Go(t, "judge", func(ctx context.Context) error {
			return (&judge.Server{ShutdownTimeout: time.Second}).Serve(ctx, ln)
		})
	} else {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		testnet.Go(t, "HTTP server", func(ctx context.Context) error {
			defer context.AfterFunc(ctx, func() { _ = srv.Close() })()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	return "http://" + ln.Addr().String() + "/"
}

// selfSigned returns a certificate for 127.0.0.1 that is its own CA, and a
// pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "check test proxy"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
