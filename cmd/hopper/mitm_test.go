package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/mitm"
	"github.com/hopper-proxy/hopper/rotate"
	"github.com/hopper-proxy/hopper/socks"
	"github.com/hopper-proxy/hopper/tunnel"
)

// runCmd runs hopper in process and returns its exit code and output.
func runCmd(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestCACommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")

	code, _, stderr := runCmd("ca", "export", "--ca-dir", dir)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "run 'hopper ca init'")

	code, stdout, stderr := runCmd("ca", "init", "--ca-dir", dir)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "CA created in "+dir)
	key, err := os.ReadFile(filepath.Join(dir, mitm.CAKeyFile))
	require.NoError(t, err)
	assert.NotContains(t, stdout+stderr, strings.TrimSpace(string(key)), "the key is never printed")
	st, err := os.Stat(filepath.Join(dir, mitm.CAKeyFile))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), st.Mode().Perm())

	code, _, stderr = runCmd("ca", "init", "--ca-dir", dir)
	assert.Equal(t, 1, code, "an existing CA is never replaced")
	assert.Contains(t, stderr, "already exists")

	code, pemOut, _ := runCmd("ca", "export", "--ca-dir", dir)
	require.Equal(t, 0, code)
	block, _ := pem.Decode([]byte(pemOut))
	require.NotNil(t, block)
	code, derOut, _ := runCmd("ca", "export", "--ca-dir", dir, "--format", "der")
	require.Equal(t, 0, code)
	assert.Equal(t, block.Bytes, []byte(derOut))
	cert, err := x509.ParseCertificate([]byte(derOut))
	require.NoError(t, err)
	assert.True(t, cert.IsCA)

	code, _, stderr = runCmd("ca", "export", "--ca-dir", dir, "--format", "p12")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "pem, der")
	code, _, _ = runCmd("ca", "frobnicate")
	assert.Equal(t, 2, code)
}

func TestServeMITMWithoutCASaysHowToMakeOne(t *testing.T) {
	code, _, stderr := runCmd("serve", "--listen", "127.0.0.1:0", "--log-level", "error", "--mitm", "--ca-dir", t.TempDir())
	assert.Equal(t, 2, code)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	assert.Contains(t, last, "run 'hopper ca init'", "one line saying how to make a CA")
}

func TestServeRejectsUnknownProfile(t *testing.T) {
	code, _, stderr := runCmd("serve", "--listen", "127.0.0.1:0", "--profile", "netscape")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `unknown profile "netscape"`)
	code, _, stderr = runCmd("serve", "--listen", "127.0.0.1:0", "--mitm-skip", "/(/")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "mitm-skip")
}

// uaOrigin is a TLS origin (httptest's certificate: 127.0.0.1, example.com)
// that answers with the User-Agent and protocol it saw.
func uaOrigin(t *testing.T) *httptest.Server {
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ua=%s proto=%s", r.UserAgent(), r.Proto)
	}))
	o.EnableHTTP2 = true
	o.StartTLS()
	t.Cleanup(o.Close)
	return o
}

func TestServeMITMWithCurl(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runCmd("ca", "init", "--ca-dir", dir)
	require.Equal(t, 0, code, stderr)
	origin := uaOrigin(t)
	h := startHopper(t, "--mitm", "--ca-dir", dir, "--profile", "chrome", "--insecure-origin")
	chrome, err := mitm.LookupProfile("chrome")
	require.NoError(t, err)
	for _, v := range []string{"--http1.1", "--http2"} {
		// No SNI for an IP: the leaf carries the CONNECT host as an IP SAN.
		out := curl(t, v, "--proxy", "http://"+h.Addr, "--cacert", filepath.Join(dir, mitm.CACertFile), origin.URL+"/")
		assert.Equal(t, "ua="+chrome.Header("User-Agent")+" proto=HTTP/2.0", out)
	}
	require.Eventually(t, func() bool {
		for _, rec := range h.records("tunnel") {
			if rec["proto"] == "mitm" && rec["status"] == float64(200) {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "an access line per intercepted request")
}

// redirect dials every target at addr, so names like example.com:443 reach
// a loopback origin.
func redirect(addr string) dial.Dialer {
	return dial.DialerFunc(func(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
		c, err := dial.DialTCP(ctx, nil, addr)
		if err != nil {
			return nil, err
		}
		return &dial.Outbound{Conn: c, Upstream: "direct", Attempts: []dial.Attempt{{Upstream: "direct"}}}, nil
	})
}

// The front ends and the interceptor wired as serve wires them: CONNECT and
// SOCKS5 (to port 443) streams are intercepted and verified end to end.
func TestFrontEndsHandStreamsToTheInterceptor(t *testing.T) {
	origin := uaOrigin(t)
	roots := x509.NewCertPool()
	roots.AddCert(origin.Certificate())
	d := redirect(origin.Listener.Addr().String())
	log := zaptest.NewLogger(t)
	ca, err := mitm.InitCA(t.TempDir(), time.Now())
	require.NoError(t, err)
	ic, err := mitm.New(mitm.Config{CA: ca, Dialer: d, RootCAs: roots, Profile: "safari", Logger: log})
	require.NoError(t, err)
	socksSrv, err := socks.New(socks.Config{Dialer: d, Logger: log, Interceptor: socksInterceptor(ic, allowAll)})
	require.NoError(t, err)
	srv, err := tunnel.New(tunnel.Config{Dialer: d, SOCKS: socksSrv, Logger: log, Interceptor: tunnelInterceptor(ic, allowAll)})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.Serve(context.Background(), ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		wg.Wait()
	})

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.PEM(), 0o644))
	safari, err := mitm.LookupProfile("safari")
	require.NoError(t, err)
	want := "ua=" + safari.Header("User-Agent") + " proto=HTTP/2.0"
	addr := ln.Addr().String()
	assert.Equal(t, want, curl(t, "--proxy", "http://"+addr, "--cacert", caFile, "https://example.com/"))
	assert.Equal(t, want, curl(t, "--proxy", "socks5h://"+addr, "--cacert", caFile, "https://www.example.com/"))
	assert.EqualValues(t, 2, ic.Stats().LeavesMinted, "one leaf per host")
	assert.Nil(t, tunnelInterceptor(nil, allowAll), "no typed nil without --mitm")
	assert.Nil(t, socksInterceptor(nil, allowAll))
	assert.Nil(t, caPEMOf(nil))
	assert.Equal(t, ca.PEM(), caPEMOf(ic)())
}

func TestRequestsPerDialFollowsRotate(t *testing.T) {
	for rot, want := range map[string]int{"per-request": 1, "per-connection": -1, "every-3": 3, "nonsense": 1} {
		assert.Equal(t, want, requestsPerDial(rot), rot)
	}
}

func TestRecoveryTracker(t *testing.T) {
	status := func(state rotate.State, quarantines uint64) []rotate.PoolStatus {
		return []rotate.PoolStatus{{Name: "default", Upstreams: []rotate.UpstreamStatus{
			{Label: "u1", Stats: rotate.Stats{State: state, Quarantines: quarantines}},
			{Label: "u2", Stats: rotate.Stats{State: rotate.StateHealthy}},
		}}}
	}
	var rt recoveryTracker
	assert.Empty(t, rt.recovered(status(rotate.StateHealthy, 2)), "the first look only records")
	assert.Empty(t, rt.recovered(status(rotate.StateQuarantined, 3)), "still quarantined")
	assert.Equal(t, []string{"u1"}, rt.recovered(status(rotate.StateHealthy, 3)), "back from quarantine")
	assert.Empty(t, rt.recovered(status(rotate.StateHealthy, 3)), "reported once")
	assert.Equal(t, []string{"u1"}, rt.recovered(status(rotate.StateHealthy, 4)), "a quarantine between two looks")
}
