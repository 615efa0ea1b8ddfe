package mitm

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/relay"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCA makes a hopper CA in a temporary directory.
func testCA(t testing.TB) *CA {
	t.Helper()
	ca, err := InitCA(t.TempDir(), time.Now())
	require.NoError(t, err)
	return ca
}

// originPKI is a separate CA that signs the test origins' certificates, so
// origins are verified for real (Config.RootCAs) rather than skipped.
type originPKI struct {
	pool *x509.CertPool
	cert tls.Certificate
	pem  []byte // the CA certificate
}

// newOriginPKI signs one certificate for names and 127.0.0.1.
func newOriginPKI(t testing.TB, names ...string) *originPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test origin CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "origin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: names, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &originPKI{
		pool: pool,
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
	}
}

// testNames are the names the test origins' certificate covers.
var testNames = []string{"localhost", "shop.example", "www.shop.example", "other.example", "skip.example"}

// hello is what an origin saw of one ClientHello.
type hello struct {
	ServerName string
	Ciphers    []uint16
	Extensions []uint16
	ALPN       []string
	Versions   []uint16
	Curves     []tls.CurveID
	Remote     string
}

// origin is a loopback HTTPS server recording every ClientHello and every
// request head it gets.
type origin struct {
	*httptest.Server
	mu       sync.Mutex
	hellos   []hello
	requests []*http.Request // heads only (bodies are gone)
}

// newOrigin starts an HTTPS origin serving h, with HTTP/2 when h2.
func newOrigin(t testing.TB, pki *originPKI, h2 bool, h http.Handler) *origin {
	t.Helper()
	o := &origin{}
	o.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.requests = append(o.requests, r.Clone(context.WithoutCancel(r.Context())))
		o.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	o.EnableHTTP2 = h2
	protos := []string{"http/1.1"}
	if h2 {
		protos = []string{"h2", "http/1.1"}
	}
	o.TLS = &tls.Config{
		NextProtos:   protos,
		Certificates: []tls.Certificate{pki.cert},
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			o.mu.Lock()
			o.hellos = append(o.hellos, hello{
				ServerName: chi.ServerName,
				Ciphers:    slices.Clone(chi.CipherSuites),
				Extensions: slices.Clone(chi.Extensions),
				ALPN:       slices.Clone(chi.SupportedProtos),
				Versions:   slices.Clone(chi.SupportedVersions),
				Curves:     slices.Clone(chi.SupportedCurves),
				Remote:     chi.Conn.RemoteAddr().String(),
			})
			o.mu.Unlock()
			return nil, nil
		},
	}
	o.Config.ErrorLog = zap.NewStdLog(zaptest.NewLogger(t).Named("origin"))
	o.StartTLS()
	t.Cleanup(o.Close)
	return o
}

func (o *origin) Hellos() []hello {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.hellos)
}

func (o *origin) Requests() []*http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.requests)
}

func (o *origin) addr() string { return o.Listener.Addr().String() }

// testDialer sends every dial to one address (whatever the target's name),
// from its local addresses in turn unless ConnID affinity pins one, and
// records each request. Its upstream labels are "direct@IP".
type testDialer struct {
	to     string
	locals []net.IP
	next   atomic.Uint64
	// perConn pins a ConnID to one local address (per-connection
	// rotation); requests with ConnID 0 always rotate.
	perConn bool

	mu   sync.Mutex
	reqs []dial.Request
}

func newTestDialer(to string, locals ...string) *testDialer {
	d := &testDialer{to: to}
	for _, l := range locals {
		d.locals = append(d.locals, net.ParseIP(l))
	}
	if len(d.locals) == 0 {
		d.locals = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	return d
}

func (d *testDialer) Dial(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
	d.mu.Lock()
	d.reqs = append(d.reqs, *req)
	d.mu.Unlock()
	var i uint64
	if d.perConn && req.ConnID != 0 {
		i = req.ConnID
	} else {
		i = d.next.Add(1) - 1
	}
	ip := d.locals[i%uint64(len(d.locals))]
	direct := &dial.Direct{LocalIP: ip}
	out, err := direct.Dial(ctx, &dial.Request{Target: d.to})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (d *testDialer) Requests() []dial.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.reqs)
}

// frontEnd is a minimal CONNECT proxy in front of an Interceptor, standing
// in for package tunnel: it answers 200 and hands streams in scope to
// ServeIntercepted, splicing the rest through the dialer.
type frontEnd struct {
	ln     net.Listener
	ic     *Interceptor
	dialer dial.Dialer
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ids    atomic.Uint64
}

func newFrontEnd(t testing.TB, ic *Interceptor, d dial.Dialer) *frontEnd {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &frontEnd{ln: ln, ic: ic, dialer: d}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.Close)
	return f
}

func (f *frontEnd) Close() {
	_ = f.ln.Close()
	f.cancel()
	f.wg.Wait()
}

func (f *frontEnd) URL() *url.URL { return &url.URL{Scheme: "http", Host: f.ln.Addr().String()} }

func (f *frontEnd) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go f.serve(c)
	}
}

func (f *frontEnd) serve(c net.Conn) {
	defer f.wg.Done()
	defer c.Close()
	stop := context.AfterFunc(f.ctx, func() { _ = c.Close() })
	defer stop()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	dr := &dial.Request{Target: req.Host, Protocol: dial.ProtocolHTTPConnect, Client: c.RemoteAddr(), ConnID: f.ids.Add(1)}
	if f.ic != nil && f.ic.Intercept(dr) {
		if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
			return
		}
		early, _ := br.Peek(br.Buffered())
		_, _, _ = f.ic.ServeIntercepted(f.ctx, c, slices.Clone(early), dr)
		return
	}
	out, err := f.dialer.Dial(f.ctx, dr)
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer out.Done(false)
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	if n := br.Buffered(); n > 0 {
		early, _ := br.Peek(n)
		if _, err := out.Conn.Write(early); err != nil {
			return
		}
	}
	_, _ = relay.Pipe(c, out.Conn, time.Minute)
}

// world is client → frontEnd → Interceptor → testDialer → origin.
type world struct {
	ca     *CA
	pki    *originPKI
	origin *origin
	dialer *testDialer
	ic     *Interceptor
	fe     *frontEnd
}

type worldOpts struct {
	h2     bool
	locals []string
	cfg    func(*Config)
	pki    *originPKI
}

func newWorld(t testing.TB, h http.Handler, o worldOpts) *world {
	t.Helper()
	w := &world{ca: testCA(t), pki: o.pki}
	if w.pki == nil {
		w.pki = newOriginPKI(t, testNames...)
	}
	w.origin = newOrigin(t, w.pki, o.h2, h)
	w.dialer = newTestDialer(w.origin.addr(), o.locals...)
	cfg := Config{CA: w.ca, Dialer: w.dialer, RootCAs: w.pki.pool, Logger: zaptest.NewLogger(t), Profile: "chrome"}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	ic, err := New(cfg)
	require.NoError(t, err)
	w.ic = ic
	w.fe = newFrontEnd(t, ic, w.dialer)
	return w
}

// client is a Go HTTPS client using the world's proxy and trusting hopper's
// CA only; h2 lets it negotiate HTTP/2 with hopper.
func (w *world) client(t testing.TB, h2 bool) *http.Client {
	t.Helper()
	tr := &http.Transport{
		Proxy:               http.ProxyURL(w.fe.URL()),
		TLSClientConfig:     &tls.Config{RootCAs: w.ca.CertPool()},
		ForceAttemptHTTP2:   h2,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 4,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// writeFile writes data to a new file in dir and returns its path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o644))
	return p
}

// get fetches url with c and returns the response and its body.
func get(t testing.TB, c *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}
