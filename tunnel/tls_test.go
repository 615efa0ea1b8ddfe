package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/judge"
)

// tlsProxy runs a Server that is an HTTPS proxy too, with a self-signed
// certificate for 127.0.0.1, and returns it with a pool trusting it.
func tlsProxy(t *testing.T, cfg Config) (*proxy, *x509.CertPool) {
	t.Helper()
	cert, roots := selfSigned(t)
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	return startProxy(t, cfg), roots
}

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(tb testing.TB) (tls.Certificate, *x509.CertPool) {
	tb.Helper()
	cert, err := judge.SelfSigned(time.Now(), "127.0.0.1")
	require.NoError(tb, err)
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	return cert, roots
}

// tlsProxyClient returns an http.Client that uses p as an HTTPS proxy and
// trusts roots (the proxy's certificate and any origin's).
func tlsProxyClient(t *testing.T, p *proxy, roots *x509.CertPool) *http.Client {
	t.Helper()
	tr := &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "https", Host: p.addr}),
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// dialTLSProxy opens a TLS connection to p under the test deadline.
func dialTLSProxy(t *testing.T, p *proxy, roots *x509.CertPool) *tls.Conn {
	t.Helper()
	raw := dialProxy(t, p)
	c := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"h2", "http/1.1"}})
	require.NoError(t, c.Handshake())
	return c
}

func TestTLSProxyForwardAndConnect(t *testing.T) {
	origin := startOrigin(t)
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "secure origin")
	}))
	t.Cleanup(secure.Close)
	p, roots := tlsProxy(t, Config{})
	roots.AddCert(secure.Certificate())
	c := tlsProxyClient(t, p, roots)

	resp, body := getBody(t, c, origin.URL+"/hello")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "hello from origin", body)
	// Kept alive: a second request goes over the same TLS connection.
	resp, body = getBody(t, c, origin.URL+"/cl?n=300000")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, sumOf(pattern(300000)), sumOf([]byte(body)))
	resp, body = getBody(t, c, secure.URL+"/")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "secure origin", body)
	c.Transport.(*http.Transport).CloseIdleConnections()

	lines := p.waitAccessLines(t, 3)
	protos := map[string]int{}
	for _, l := range lines {
		f := fieldsOf(l)
		assert.Equal(t, true, f["tls"], "%v", f)
		assert.Equal(t, "ok", f["result"], "%v", f)
		protos[f["proto"].(string)]++
	}
	assert.Equal(t, map[string]int{"http": 2, "connect": 1}, protos)
}

// A CONNECT tunnel over TLS carries bulk both ways at once, and half-closes
// each way: the client's close_notify reaches the target as EOF, the
// target's EOF reaches the client as close_notify.
func TestTLSProxyConnectBulkHalfClose(t *testing.T) {
	origin := serveTCP(t, testnet.Echo)
	p, roots := tlsProxy(t, Config{})
	c := dialTLSProxy(t, p, roots)
	assert.Equal(t, "http/1.1", c.ConnectionState().NegotiatedProtocol)
	r := sendHead(t, c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", origin.Addr(), origin.Addr())
	require.Equal(t, 200, r.status, r.raw)

	const size = 8 << 20
	testnet.BulkEcho(t, c, pattern(size))
	require.NoError(t, c.Close())

	f := fieldsOf(p.waitAccessLines(t, 1)[0])
	assert.Equal(t, "connect", f["proto"])
	assert.Equal(t, "ok", f["result"])
	assert.Equal(t, true, f["tls"])
	assert.Equal(t, int64(size), f["up"])
	assert.Equal(t, int64(size), f["down"])
}

// SOCKS inside TLS goes to the SOCKS handler with the first byte sent
// inside TLS and the TLS stream itself, its type telling the handler the
// client came in over TLS (socks logs "tls" from it); a plain client on
// the same port hands over no *tls.Conn. A minimal SOCKS5 greeting stands
// in for the real handler, which tunnel must not import.
func TestTLSProxySOCKS(t *testing.T) {
	got := make(chan string, 1)
	socksH := StreamHandlerFunc(func(_ context.Context, conn net.Conn, first byte, done func()) {
		defer done()
		_, isTLS := conn.(*tls.Conn)
		rest := make([]byte, 2)
		_, err := io.ReadFull(conn, rest)
		got <- fmt.Sprintf("tls=%v first=%#x rest=%x err=%v", isTLS, first, rest, err)
		_, _ = conn.Write([]byte{0x05, 0x00})
	})
	p, roots := tlsProxy(t, Config{SOCKS: socksH})
	c := dialTLSProxy(t, p, roots)
	_, err := c.Write([]byte{0x05, 0x01, 0x00})
	require.NoError(t, err)
	reply := make([]byte, 2)
	_, err = io.ReadFull(c, reply)
	require.NoError(t, err)
	assert.Equal(t, []byte{0x05, 0x00}, reply)
	assert.Equal(t, "tls=true first=0x5 rest=0100 err=<nil>", <-got)

	plain := dialProxy(t, p)
	_, err = plain.Write([]byte{0x05, 0x01, 0x00})
	require.NoError(t, err)
	_, err = io.ReadFull(plain, reply)
	require.NoError(t, err)
	assert.Equal(t, "tls=false first=0x5 rest=0100 err=<nil>", <-got)
}

// Plain HTTP and TLS clients share the listener.
func TestTLSProxyPlainClientsStillServed(t *testing.T) {
	origin := startOrigin(t)
	p, roots := tlsProxy(t, Config{})
	plain, _ := proxyClient(t, p)
	resp, body := getBody(t, plain, origin.URL+"/hello")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "hello from origin", body)
	resp, body = getBody(t, tlsProxyClient(t, p, roots), origin.URL+"/hello")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "hello from origin", body)

	lines := p.waitAccessLines(t, 2)
	assert.NotContains(t, fieldsOf(lines[0]), "tls")
	assert.Equal(t, true, fieldsOf(lines[1])["tls"])
}

// Failed handshakes end their connection with one access line each and
// leave the Server serving; goleak (TestMain) checks no goroutine stays.
func TestTLSProxyBadHandshake(t *testing.T) {
	origin := startOrigin(t)
	p, roots := tlsProxy(t, Config{HeaderTimeout: 300 * time.Millisecond})

	// A record header and then garbage.
	c := dialProxy(t, p)
	_, err := c.Write([]byte("\x16\x03\x01\x00\x05hello"))
	require.NoError(t, err)
	_, err = io.ReadAll(c)
	require.NoError(t, err)

	// A client that does not trust the certificate.
	raw := dialProxy(t, p)
	err = tls.Client(raw, &tls.Config{ServerName: "127.0.0.1"}).Handshake()
	var unknown x509.UnknownAuthorityError
	require.ErrorAs(t, err, &unknown)
	raw.Close()

	// A handshake that stalls after its first byte meets the header deadline.
	stall := dialProxy(t, p)
	_, err = stall.Write([]byte{0x16})
	require.NoError(t, err)
	_, err = io.ReadAll(stall)
	require.NoError(t, err)

	lines := p.waitAccessLines(t, 3)
	var timedOut bool
	for _, l := range lines {
		f := fieldsOf(l)
		assert.Equal(t, "unknown", f["proto"])
		assert.Equal(t, "tls-failed", f["result"])
		assert.Equal(t, true, f["tls"])
		assert.NotEmpty(t, f["client"])
		timedOut = timedOut || strings.Contains(f["error"].(string), "timeout")
	}
	assert.True(t, timedOut, "one handshake met the header deadline")

	resp, body := getBody(t, tlsProxyClient(t, p, roots), origin.URL+"/hello")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "hello from origin", body)
}

// Without Config.TLS a TLS client gets what it always got: its ClientHello
// is read as the start of a request head that never ends, and the header
// deadline closes the connection without a reply.
func TestTLSHandshakeToPlainProxy(t *testing.T) {
	p := startProxy(t, Config{HeaderTimeout: 200 * time.Millisecond})
	c := dialProxy(t, p)
	err := tls.Client(c, &tls.Config{ServerName: "127.0.0.1"}).Handshake()
	require.ErrorIs(t, err, io.EOF)
	assert.Empty(t, p.accessLines())
}

func TestTLSConfigNeedsCertificate(t *testing.T) {
	_, err := New(Config{Dialer: &dial.Direct{}, TLS: &tls.Config{}})
	require.ErrorIs(t, err, ErrInvalidConfig)
}

// curl, as a real client of an HTTPS proxy: forward and CONNECT.
func TestTLSProxyCurl(t *testing.T) {
	requireCurl(t)
	origin := startOrigin(t)
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "secure origin")
	}))
	t.Cleanup(secure.Close)
	p, _ := tlsProxy(t, Config{})
	dir := t.TempDir()
	caFile := filepath.Join(dir, "proxy.pem")
	require.NoError(t, os.WriteFile(caFile, []byte(pemCert(p.srv.tls.Certificates[0].Certificate[0])), 0o600))
	originCA := filepath.Join(dir, "origin.pem")
	require.NoError(t, os.WriteFile(originCA, []byte(pemCert(secure.Certificate().Raw)), 0o600))

	out := runCurl(t, "-x", "https://"+p.addr, "--proxy-cacert", caFile, origin.URL+"/hello")
	assert.Equal(t, "hello from origin", out)
	out = runCurl(t, "-x", "https://"+p.addr, "--proxy-cacert", caFile, "--cacert", originCA, secure.URL+"/")
	assert.Equal(t, "secure origin", out)
}

func pemCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
