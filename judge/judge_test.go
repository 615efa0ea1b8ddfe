package judge

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startJudge serves a judge on 127.0.0.1:0 until the test ends.
func startJudge(t *testing.T) string {
	t.Helper()
	ln := testnet.Listen(t, "")
	s := &Server{Logger: zaptest.NewLogger(t)}
	testnet.Go(t, "judge", func(ctx context.Context) error { return s.Serve(ctx, ln) })
	return ln.Addr().String()
}

// ask sends raw (a request head) from the local address src and decodes the
// judge's answer.
func ask(t *testing.T, addr, src, raw string) (*http.Response, Report, *net.TCPAddr) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	require.NoError(t, err)
	defer resp.Body.Close()
	var rep Report
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if method != http.MethodHead {
		require.NoError(t, json.Unmarshal(body, &rep), "%s", body)
	} else {
		assert.Empty(t, body)
	}
	return resp, rep, c.LocalAddr().(*net.TCPAddr)
}

func TestReportEchoesPeerAndHeaders(t *testing.T) {
	addr := startJudge(t)
	resp, rep, local := ask(t, addr, "127.0.0.7",
		"GET /some/path?q=1 HTTP/1.1\r\nHost: judge.test\r\nX-Forwarded-For: 198.51.100.9\r\nVia: 1.1 squid\r\n"+
			"via: 1.0 other\r\nUser-Agent: t\r\nConnection: close\r\n\r\n")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	assert.Equal(t, "127.0.0.7", rep.IP, "the peer address, never a forwarding header")
	assert.Equal(t, local.Port, rep.Port)
	assert.Equal(t, "GET", rep.Method)
	assert.Equal(t, "HTTP/1.1", rep.Proto)
	assert.Equal(t, "judge.test", rep.Host)
	assert.Equal(t, "/some/path?q=1", rep.URI)
	assert.Equal(t, []string{"198.51.100.9"}, rep.Headers["X-Forwarded-For"])
	assert.Equal(t, []string{"1.1 squid", "1.0 other"}, rep.Headers["Via"], "canonical names, values in order")
	assert.Equal(t, []string{"close"}, rep.Headers["Connection"])
	assert.NotContains(t, rep.Headers, "Host")
}

func TestReportAbsoluteFormAndMethods(t *testing.T) {
	addr := startJudge(t)
	_, rep, _ := ask(t, addr, "127.0.0.8",
		"POST http://judge.test:8081/x HTTP/1.1\r\nHost: judge.test:8081\r\nProxy-Connection: keep-alive\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
	assert.Equal(t, "POST", rep.Method)
	assert.Equal(t, "http://judge.test:8081/x", rep.URI, "a forward proxy's absolute form is kept")
	assert.Equal(t, []string{"keep-alive"}, rep.Headers["Proxy-Connection"])
	assert.Equal(t, "127.0.0.8", rep.IP)

	resp, _, _ := ask(t, addr, "127.0.0.8", "HEAD / HTTP/1.1\r\nHost: j\r\nConnection: close\r\n\r\n")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	n, err := strconv.Atoi(resp.Header.Get("Content-Length"))
	require.NoError(t, err)
	assert.Positive(t, n, "HEAD announces the length GET would send")
}

func TestReportSchemaFieldNames(t *testing.T) {
	b, err := json.Marshal(Report{})
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, []string{"ip", "port", "method", "proto", "host", "uri", "headers"}, keys)
}

func TestJudgeWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl not installed: make test installs it (.ci/deps)")
	}
	addr := startJudge(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, "-sS", "--interface", "127.0.0.9", "-H", "X-Real-IP: 192.0.2.1",
		"http://"+addr+"/").Output()
	require.NoError(t, err)
	var rep Report
	require.NoError(t, json.Unmarshal(out, &rep), "%s", out)
	assert.Equal(t, "127.0.0.9", rep.IP)
	assert.Equal(t, []string{"192.0.2.1"}, rep.Headers["X-Real-Ip"])
	assert.Regexp(t, `^curl/`, rep.Headers["User-Agent"][0])
}

func TestServeStopsOnCancelAndListenError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- (&Server{ShutdownTimeout: 200 * time.Millisecond}).Serve(ctx, ln) }()
	// A silent client holds the shutdown up for ShutdownTimeout at most.
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	_, err = net.Dial("tcp", ln.Addr().String())
	assert.Error(t, err, "the listener is closed")

	err = (&Server{}).ListenAndServe(context.Background(), "256.0.0.1:0")
	assert.Error(t, err)
}
