package main

import (
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

	// HTTP lines note TLS; the SOCKS front end logs its own, as on a
	// plain connection.
	want := map[string]int{"http tls": 1, "connect tls": 1, "http plain": 1, "socks5 plain": 1}
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
