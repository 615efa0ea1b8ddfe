package mitm

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

// benchClient is a keep-alive HTTP/2 client through the world's proxy,
// trusting roots.
func benchClient(b *testing.B, w *world, roots *x509.CertPool) *http.Client {
	tr := &http.Transport{
		Proxy:             http.ProxyURL(w.fe.URL()),
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func fetch(b *testing.B, c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// perRequest times n sequential requests.
func perRequest(b *testing.B, c *http.Client, url string, n int) time.Duration {
	start := time.Now()
	for range n {
		fetch(b, c, url)
	}
	return time.Since(start) / time.Duration(n)
}

// BenchmarkMITMRequests: sequential requests on one kept-alive client
// connection to an HTTP/2 origin, through a plain CONNECT tunnel (the
// baseline, measured in the same run) and through interception with one
// origin connection per tunnel (per-connection) or a dial and handshake per
// request (per-request rotation). It reports requests/s and the latency
// added over the plain tunnel.
func BenchmarkMITMRequests(b *testing.B) {
	for _, mode := range []struct {
		name string
		per  int
	}{{"connect", 0}, {"mitm-per-connection", -1}, {"mitm-per-request", 1}} {
		b.Run(mode.name, func(b *testing.B) {
			w := newWorld(b, echo(), worldOpts{h2: true, cfg: func(c *Config) {
				c.Logger = zap.NewNop()
				c.RequestsPerDial = mode.per
				c.Skip = []string{"skip.example"} // the baseline, spliced
				if mode.per == 0 {
					c.Hosts = []string{"nothing.invalid"} // out of scope: spliced
				}
			}})
			plain := benchClient(b, w, w.pki.pool)
			const url = "https://shop.example/"
			var baseline time.Duration
			if mode.per != 0 {
				// Baseline from the same run: skip.example is out of scope.
				fetch(b, plain, "https://skip.example/")
				baseline = perRequest(b, plain, "https://skip.example/", 200)
			}
			c := plain
			if mode.per != 0 {
				c = benchClient(b, w, w.ca.CertPool())
			}
			fetch(b, c, url) // tunnel, leaf and first origin connection
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				fetch(b, c, url)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
			lat := elapsed / time.Duration(b.N)
			b.ReportMetric(float64(lat.Microseconds()), "µs/req")
			if mode.per != 0 {
				b.ReportMetric(float64((lat - baseline).Microseconds()), "added-µs/req")
			}
		})
	}
}

// BenchmarkLeafMint: signing a new leaf (one shared key, so one ECDSA
// signature plus encoding).
func BenchmarkLeafMint(b *testing.B) {
	c, err := newLeafCache(testCA(b), 16)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if _, err := c.mint(fmt.Sprintf("h%d.example", i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/leaf")
}

// BenchmarkCachedHandshake: full TLS 1.3 handshakes (no resumption) against
// the client-facing configuration, the leaf already cached, over loopback.
func BenchmarkCachedHandshake(b *testing.B) {
	ca := testCA(b)
	ic, err := New(Config{CA: ca, Dialer: newTestDialer("127.0.0.1:1"), Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ic.leaves.get("shop.example"); err != nil {
		b.Fatal(err)
	}
	srv := testnet.Serve(b, testnet.Listen(b, ""), func(c net.Conn) {
		tc := tls.Server(c, ic.tlsCfg)
		_ = tc.Handshake()
		_ = tc.Close()
	})
	cfg := &tls.Config{ServerName: "shop.example", RootCAs: ca.CertPool(), NextProtos: []string{"h2"}}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			b.Fatal(err)
		}
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			b.Fatal(err)
		}
		_ = tc.Close()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
	if ic.Stats().LeavesMinted != 1 {
		b.Fatalf("minted %d leaves", ic.Stats().LeavesMinted)
	}
}
