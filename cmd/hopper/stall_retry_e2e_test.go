package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// switchUpstream is an HTTP upstream proxy on its own loopback address that
// forwards (tunnelTo) until stall is set, and from then on takes forward
// requests and never answers them.
type switchUpstream struct {
	label   string // as hopper's list and logs name it
	stall   atomic.Bool
	served  atomic.Int64
	stalled atomic.Int64
}

func startSwitchUpstream(t *testing.T, ip string) *switchUpstream {
	u := &switchUpstream{}
	p := startUpstream(t, ip, func(c net.Conn, br *bufio.Reader, req *http.Request) {
		if u.stall.Load() {
			u.stalled.Add(1)
			_, _ = io.Copy(io.Discard, br) // until hopper gives up on it
			return
		}
		u.served.Add(1)
		tunnelTo(c, br, req)
	})
	u.label = "http://" + p.addr()
	return u
}

// adminHopper is `hopper serve` in-process with the admin API on.
type adminHopper struct {
	Addr string
	api  string // /api/upstreams URL
	logs *lineLog
}

// startAdminHopper runs serve in-process with --admin 127.0.0.1:0 and args,
// until the test ends.
func startAdminHopper(t *testing.T, args ...string) *adminHopper {
	t.Helper()
	p := startInProcess(t, append([]string{"--admin", "127.0.0.1:0"}, args...)...)
	h := &adminHopper{Addr: p.Addr, logs: p.logs}
	api := regexp.MustCompile(`(?m)^admin: upstreams +(http://\S+)$`)
	require.Eventually(t, func() bool {
		if m := api.FindStringSubmatch(p.stdout.String()); m != nil {
			h.api = m[1]
		}
		return h.api != ""
	}, 15*time.Second, 5*time.Millisecond, "admin lines: %q", p.stdout.String())
	return h
}

// failures returns the failures /api/upstreams counts against each upstream
// label, and each one's last error.
func (h *adminHopper) failures(t *testing.T) (map[string]float64, map[string]string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(h.api)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Pools []struct {
			Upstreams []struct {
				Label     string  `json:"label"`
				Failures  float64 `json:"failures"`
				LastError string  `json:"last_error"`
			} `json:"upstreams"`
		} `json:"pools"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	n, last := map[string]float64{}, map[string]string{}
	for _, p := range body.Pools {
		for _, u := range p.Upstreams {
			n[u.Label] += u.Failures
			last[u.Label] = u.LastError
		}
	}
	return n, last
}

// proxyConn is one client connection to hopper carrying forward requests.
type proxyConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialHopper(t *testing.T, addr string) *proxyConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &proxyConn{c: c, br: bufio.NewReader(c)}
}

// do sends one request for http://origin/ (with a body if body is not
// empty, as proxy user user if not empty) and returns the status and the
// Hopper-Error header. Every wait is bounded: a hang fails the test.
func (pc *proxyConn) do(t *testing.T, method, origin, user, body string) (int, string) {
	t.Helper()
	require.NoError(t, pc.c.SetDeadline(time.Now().Add(10*time.Second)))
	head := fmt.Sprintf("%s http://%s/ HTTP/1.1\r\nHost: %s\r\n", method, origin, origin)
	if user != "" {
		head += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":x")) + "\r\n"
	}
	if body != "" {
		head += fmt.Sprintf("Content-Length: %d\r\n", len(body))
	}
	_, err := io.WriteString(pc.c, head+"\r\n"+body)
	require.NoError(t, err)
	resp, err := http.ReadResponse(pc.br, nil)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Hopper-Error")
}

func writeUpstreamList(t *testing.T, ups ...*switchUpstream) string {
	t.Helper()
	var b strings.Builder
	for _, u := range ups {
		b.WriteString(u.label + "\n")
	}
	path := filepath.Join(t.TempDir(), "list.txt")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	return path
}

// stallRetryWait is --response-header-timeout in these tests.
const stallRetryWait = "300ms"

// TestServeStallRetryLeavesElsewhere: when the upstream a client is pinned
// to (per-connection rotation, or a sticky session) takes a GET and never
// answers, the GET is sent again through the other upstream and the client
// gets 200; the stall is charged to the upstream that stalled; a sticky
// session stays on the upstream that answered.
func TestServeStallRetryLeavesElsewhere(t *testing.T) {
	origin := sourceOrigin(t)
	cases := []struct {
		name     string
		args     []string
		user     string
		sameConn bool // all requests on one client connection
	}{
		{"per-connection", []string{"--rotate", "per-connection"}, "", true},
		{"sticky session", nil, "scraper-session-s1", false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := startSwitchUpstream(t, fmt.Sprintf("127.0.0.%d", 241+2*i))
			b := startSwitchUpstream(t, fmt.Sprintf("127.0.0.%d", 242+2*i))
			// Default --failures-until-quarantine (3): one stall leaves the
			// stalled upstream in service, so only Avoid keeps the retry off it.
			h := startAdminHopper(t, append([]string{"--upstreams", writeUpstreamList(t, a, b), "--refresh", "1h",
				"--probe-interval", "0", "--response-header-timeout", stallRetryWait}, tc.args...)...)
			conn := dialHopper(t, h.Addr)
			client := func() *proxyConn {
				if tc.sameConn {
					return conn
				}
				return dialHopper(t, h.Addr)
			}

			status, _ := client().do(t, "GET", origin, tc.user, "")
			require.Equal(t, 200, status)
			pinned, other := a, b
			if b.served.Load() == 1 {
				pinned, other = b, a
			}
			require.Equal(t, int64(1), pinned.served.Load())
			pinned.stall.Store(true)

			status, hopperErr := client().do(t, "GET", origin, tc.user, "")
			assert.Equal(t, 200, status, hopperErr)
			assert.Equal(t, int64(1), pinned.stalled.Load(), "the pinned upstream took the GET first")
			assert.Equal(t, int64(1), other.served.Load(), "and the other one answered it")

			require.Eventually(t, func() bool { return len(h.logs.records("tunnel")) >= 2 }, 5*time.Second, 10*time.Millisecond)
			rec := h.logs.records("tunnel")[1]
			assert.Equal(t, "ok", rec["result"], "%v", rec)
			assert.Equal(t, 2.0, rec["attempts"])
			assert.Equal(t, other.label, rec["upstream"])

			failures, last := h.failures(t)
			assert.Equal(t, 1.0, failures[pinned.label], "the stall is charged to the upstream that stalled")
			assert.Contains(t, last[pinned.label], "response header timeout")
			assert.Zero(t, failures[other.label])

			if tc.user != "" {
				status, _ = client().do(t, "GET", origin, tc.user, "")
				assert.Equal(t, 200, status)
				assert.Equal(t, int64(2), other.served.Load(), "the session moved to the upstream that answered")
				assert.Equal(t, int64(1), pinned.stalled.Load())
			}
		})
	}
}

// TestServeStallRetryNoOther: with one upstream the GET goes back to it and,
// stalling again, ends in 504 (no hang); a POST is never sent again, even
// with another upstream in the pool.
func TestServeStallRetryNoOther(t *testing.T) {
	origin := sourceOrigin(t)

	t.Run("GET, one upstream", func(t *testing.T) {
		only := startSwitchUpstream(t, "127.0.0.245")
		only.stall.Store(true)
		h := startAdminHopper(t, "--upstreams", writeUpstreamList(t, only), "--refresh", "1h",
			"--probe-interval", "0", "--response-header-timeout", stallRetryWait, "--rotate", "per-connection")
		status, hopperErr := dialHopper(t, h.Addr).do(t, "GET", origin, "", "")
		assert.Equal(t, 504, status)
		assert.Equal(t, "timeout", hopperErr)
		assert.Equal(t, int64(2), only.stalled.Load(), "sent once more, through the only upstream")
		failures, _ := h.failures(t)
		assert.Equal(t, 2.0, failures[only.label], "both stalls are charged")
	})

	t.Run("POST, two upstreams", func(t *testing.T) {
		a := startSwitchUpstream(t, "127.0.0.246")
		b := startSwitchUpstream(t, "127.0.0.247")
		h := startAdminHopper(t, "--upstreams", writeUpstreamList(t, a, b), "--refresh", "1h",
			"--probe-interval", "0", "--response-header-timeout", stallRetryWait, "--rotate", "per-connection")
		conn := dialHopper(t, h.Addr)
		status, _ := conn.do(t, "GET", origin, "", "")
		require.Equal(t, 200, status)
		pinned, other := a, b
		if b.served.Load() == 1 {
			pinned, other = b, a
		}
		pinned.stall.Store(true)
		status, hopperErr := conn.do(t, "POST", origin, "", "hello")
		assert.Equal(t, 504, status)
		assert.Equal(t, "timeout", hopperErr)
		assert.Equal(t, int64(1), pinned.stalled.Load())
		assert.Zero(t, other.served.Load()+other.stalled.Load(), "a POST is not sent again")
		failures, _ := h.failures(t)
		assert.Equal(t, 1.0, failures[pinned.label])
	})
}
