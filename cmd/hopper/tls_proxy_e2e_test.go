package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/judge"
	"github.com/hopper-proxy/hopper/mitm"
)

// writeCertPair writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files in dir, and returns their paths and the certificate.
func writeCertPair(t *testing.T, dir string) (certFile, keyFile string, leaf *x509.Certificate) {
	t.Helper()
	cert, err := judge.SelfSigned(time.Now(), "127.0.0.1")
	require.NoError(t, err)
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600))
	return certFile, keyFile, cert.Leaf
}

// hopper with --tls-cert is an HTTPS proxy for curl (forward and CONNECT)
// and serves SOCKS5 inside TLS and plain clients on the same port.
func TestTLSProxyE2E(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, leaf := writeCertPair(t, dir)
	p := startHopper(t, "--tls-cert", certFile, "--tls-key", keyFile)
	listening := p.records("listening")
	require.Len(t, listening, 1)
	assert.Equal(t, true, listening[0]["tls"])
	assert.Equal(t, "https://"+p.Addr, listening[0]["https_proxy"])

	origin := sourceOrigin(t)
	proxyURL := "https://" + p.Addr
	assert.Equal(t, "127.0.0.1", curl(t, "-x", proxyURL, "--proxy-cacert", certFile, "http://"+origin+"/"))

	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "secure origin")
	}))
	t.Cleanup(secure.Close)
	originCA := filepath.Join(dir, "origin.pem")
	require.NoError(t, os.WriteFile(originCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw}), 0o600))
	assert.Equal(t, "secure origin", curl(t, "-x", proxyURL, "--proxy-cacert", certFile, "--cacert", originCA, secure.URL+"/"))

	// Plain HTTP on the same port.
	assert.Equal(t, "127.0.0.1", curl(t, "-x", "http://"+p.Addr, "http://"+origin+"/"))

	// SOCKS5 inside TLS, with a raw client.
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", p.Addr, &tls.Config{RootCAs: roots})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	host, port, err := net.SplitHostPort(origin)
	require.NoError(t, err)
	var portN int
	_, err = fmt.Sscan(port, &portN)
	require.NoError(t, err)
	req := append([]byte{0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01}, net.ParseIP(host).To4()...)
	req = binary.BigEndian.AppendUint16(req, uint16(portN))
	_, err = c.Write(req)
	require.NoError(t, err)
	reply := make([]byte, 2+10)
	_, err = io.ReadFull(c, reply)
	require.NoError(t, err)
	require.Equal(t, []byte{0x05, 0x00, 0x05, 0x00}, reply[:4], "method and connect replies")
	_, err = fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", origin)
	require.NoError(t, err)
	body, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.True(t, bytes.HasSuffix(body, []byte("\r\n\r\n127.0.0.1")), "%q", body)
	require.NoError(t, c.Close())

	// Every line of a client that came in over TLS notes it, the SOCKS
	// front end's own included.
	want := map[string]int{"http tls": 1, "connect tls": 1, "http plain": 1, "socks5 tls": 1}
	got := map[string]int{}
	assert.Eventually(t, func() bool {
		got = map[string]int{}
		for _, r := range p.records("tunnel") {
			via := "plain"
			if r["tls"] == true {
				via = "tls"
			}
			got[fmt.Sprint(r["proto"], " ", via)]++
		}
		return len(got) == len(want)
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, want, got)
}

// SIGHUP swaps in the certificate the files hold now.
func TestTLSProxyCertReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, first := writeCertPair(t, dir)
	p := startHopper(t, "--tls-cert", certFile, "--tls-key", keyFile)
	served := func() *x509.Certificate {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", p.Addr, &tls.Config{InsecureSkipVerify: true})
		require.NoError(t, err)
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	assert.True(t, first.Equal(served()))

	_, _, second := writeCertPair(t, dir)
	p.signal(syscall.SIGHUP)
	if !assert.Eventually(t, func() bool { return second.Equal(served()) }, 10*time.Second, 20*time.Millisecond) {
		t.Fatal(p.log())
	}

	// A pair that no longer loads keeps the last good one.
	require.NoError(t, os.WriteFile(keyFile, []byte("garbage"), 0o600))
	p.signal(syscall.SIGHUP)
	require.Eventually(t, func() bool {
		return len(p.records("--tls-cert reload failed; keeping the previous certificate")) > 0
	}, 10*time.Second, 20*time.Millisecond)
	assert.True(t, second.Equal(served()))
}

func TestTLSProxyFlags(t *testing.T) {
	for _, args := range [][]string{{"--tls-cert", "a.pem"}, {"--tls-key", "b.pem"}} {
		_, err := parseServe(args, &bytes.Buffer{})
		require.Error(t, err, "%v", args)
		assert.Contains(t, err.Error(), "--tls-cert")
		assert.Contains(t, err.Error(), "--tls-key")
	}
	yamlPair := writeFile(t, "tls.yaml", "tls-cert: a.pem\ntls-key: b.pem\n")
	cfg, err := parseServe([]string{"--config", yamlPair}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, "a.pem", cfg.TLSCert)
	assert.Equal(t, "b.pem", cfg.TLSKey)

	var out, errOut bytes.Buffer
	assert.Equal(t, 2, run(context.Background(), []string{"serve", "--listen", "127.0.0.1:0", "--tls-key", "b.pem"}, &out, &errOut))
	assert.Contains(t, errOut.String(), "--tls-cert and --tls-key go together")

	// A pair that does not load stops hopper before it listens.
	errOut.Reset()
	missing := filepath.Join(t.TempDir(), "missing.pem")
	code := run(context.Background(), []string{"serve", "--listen", "127.0.0.1:0", "--tls-cert", missing, "--tls-key", missing}, &out, &errOut)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, errOut.String(), "--tls-cert")
	assert.Contains(t, errOut.String(), "missing.pem")
	assert.NotContains(t, errOut.String(), "listening")
}

// MITM inside an HTTPS-proxy connection: TLS inside TLS. A client speaks
// TLS to hopper's port (the proxy's certificate), sends CONNECT inside it
// to a loopback HTTPS origin, and hopper intercepts the tunnel: the inner
// handshake meets a leaf from hopper's CA (which the client trusts, and
// nothing else), and the origin's answer comes back through it. curl, as an
// HTTPS-proxy client with the CA trusted, gets the same.
func TestTLSProxyMITME2E(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, proxyLeaf := writeCertPair(t, dir)
	caDir := filepath.Join(dir, "ca")
	code, _, stderr := runCmd("ca", "init", "--ca-dir", caDir)
	require.Equal(t, 0, code, stderr)
	caPEM, err := os.ReadFile(filepath.Join(caDir, mitm.CACertFile))
	require.NoError(t, err)
	block, _ := pem.Decode(caPEM)
	require.NotNil(t, block)
	caCert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)

	origin := uaOrigin(t)
	originAddr := origin.Listener.Addr().String()
	p := startHopper(t, "--tls-cert", certFile, "--tls-key", keyFile,
		"--mitm", "--ca-dir", caDir, "--profile", "chrome", "--insecure-origin")

	proxyRoots := x509.NewCertPool()
	proxyRoots.AddCert(proxyLeaf)
	outer, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", p.Addr, &tls.Config{RootCAs: proxyRoots})
	require.NoError(t, err)
	defer outer.Close()
	require.NoError(t, outer.SetDeadline(time.Now().Add(10*time.Second)))
	assert.True(t, proxyLeaf.Equal(outer.ConnectionState().PeerCertificates[0]), "the outer TLS is the proxy's")
	_, err = fmt.Fprintf(outer, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", originAddr, originAddr)
	require.NoError(t, err)
	br := bufio.NewReader(outer)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.Zero(t, br.Buffered(), "nothing follows the 200 before the client speaks")

	// Only hopper's CA is trusted inside: the origin's own certificate
	// would fail verification.
	caRoots := x509.NewCertPool()
	caRoots.AddCert(caCert)
	inner := tls.Client(outer, &tls.Config{RootCAs: caRoots, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	require.NoError(t, inner.Handshake())
	leaf := inner.ConnectionState().PeerCertificates[0]
	assert.Equal(t, caCert.Subject.String(), leaf.Issuer.String(), "the leaf is hopper's")
	require.NoError(t, leaf.CheckSignatureFrom(caCert))
	assert.False(t, leaf.Equal(origin.Certificate()), "not the origin's certificate")
	assert.False(t, leaf.Equal(proxyLeaf), "not the proxy's certificate")

	_, err = fmt.Fprintf(inner, "GET /inner HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", originAddr)
	require.NoError(t, err)
	innerBr := bufio.NewReader(inner)
	resp, err = http.ReadResponse(innerBr, nil)
	require.NoError(t, err)
	chrome, err := mitm.LookupProfile("chrome")
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "ua="+chrome.Header("User-Agent")+" proto=HTTP/2.0", readAll(resp), "the origin's answer, re-originated by hopper")
	// Connection: close ends both layers cleanly: hopper's leaf session
	// with close_notify, then the proxy connection with its own.
	rest, err := io.ReadAll(innerBr)
	require.NoError(t, err)
	assert.Empty(t, rest)
	rest, err = io.ReadAll(outer)
	require.NoError(t, err)
	assert.Empty(t, rest)

	caFile := filepath.Join(caDir, mitm.CACertFile)
	out := curl(t, "-x", "https://"+p.Addr, "--proxy-cacert", certFile, "--cacert", caFile, origin.URL+"/curl")
	assert.Equal(t, "ua="+chrome.Header("User-Agent")+" proto=HTTP/2.0", out)

	// Two CONNECT lines over TLS handed to the interceptor, and a line per
	// request inside.
	var connects, requests int
	require.Eventually(t, func() bool {
		connects, requests = 0, 0
		for _, r := range p.records("tunnel") {
			switch {
			case r["proto"] == "connect" && r["tls"] == true && r["upstream"] == "mitm" && r["result"] == "ok":
				connects++
			case r["proto"] == "mitm" && r["status"] == float64(200):
				requests++
			}
		}
		return connects == 2 && requests == 2
	}, 10*time.Second, 20*time.Millisecond, "connects %d, requests %d\n%s", connects, requests, p.log())
}
