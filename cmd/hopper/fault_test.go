package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// faultWorld is hopper running in-process with one pool per kind of faulty
// upstream, routed by target name, plus a healthy pool for everything else.
type faultWorld struct {
	h    *inproc
	echo *peer // an echo origin reached through the healthy pool
}

const dieAfter = 1000 // bytes the mid-stream upstream relays before it dies

func startFaultWorld(t *testing.T) *faultWorld {
	t.Helper()
	useNXDomainResolver(t)
	echo := startPeer(t, "127.0.0.1", func(c net.Conn) {
		_, _ = io.Copy(c, c)
	})
	good := startUpstream(t, "127.0.0.21", tunnelTo)
	reset := startUpstream(t, "127.0.0.22", func(c net.Conn, _ *bufio.Reader, _ *http.Request) {
		resetConn(c) // after reading the request, before answering
	})
	stall := startUpstream(t, "127.0.0.23", func(c net.Conn, _ *bufio.Reader, _ *http.Request) {
		_, _ = io.Copy(io.Discard, c) // never answers; returns when hopper gives up
	})
	die := startUpstream(t, "127.0.0.24", func(c net.Conn, _ *bufio.Reader, _ *http.Request) {
		// The die pool's targets are names; it relays to the echo origin.
		out, err := net.Dial("tcp", echo.addr())
		if err != nil {
			return
		}
		defer out.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() { _, _ = io.Copy(out, c) }()
		_, _ = io.CopyN(c, out, dieAfter)
		resetConn(c)
	})
	dnsFail := startUpstream(t, "127.0.0.25", func(c net.Conn, _ *bufio.Reader, _ *http.Request) {
		_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nX-Squid-Error: ERR_DNS_FAIL 0\r\nContent-Length: 0\r\n\r\n")
	})

	dir := t.TempDir()
	list := func(name, entry string) string {
		p := filepath.Join(dir, name+".txt")
		require.NoError(t, os.WriteFile(p, []byte(entry+"\n"), 0o600))
		return p
	}
	cfg := fmt.Sprintf(`pools:
  good:    { upstreams: [%s] }
  reset:   { upstreams: [%s] }
  stall:   { upstreams: [%s] }
  die:     { upstreams: [%s] }
  dnsfail: { upstreams: [%s] }
  direct:  { upstreams: [%s] }
rules:
  - { host: "*.reset.test", pool: reset }
  - { host: "*.stall.test", pool: stall }
  - { host: "*.die.test", pool: die }
  - { host: "*.dnsfail.test", pool: dnsfail }
  - { host: "*.nxdomain.test", pool: direct }
  - { host: "*", pool: good }
`, list("good", "http://"+good.addr()), list("reset", "http://"+reset.addr()), list("stall", "http://"+stall.addr()),
		list("die", "http://"+die.addr()), list("dnsfail", "http://"+dnsFail.addr()), list("direct", "direct"))
	path := filepath.Join(dir, "hopper.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	// A short idle timeout bounds the wait for a forward response from the
	// stalling upstream; the healthy tunnel is kept busy by its pinger.
	h := startInProcess(t, "--config", path, "--retries", "0", "--failures-until-quarantine", "0",
		"--probe-interval", "0", "--connect-timeout", "1s", "--idle-timeout", "2s", "--refresh", "1h")
	return &faultWorld{h: h, echo: echo}
}

// healthyTunnel is a CONNECT tunnel to the echo origin through the healthy
// pool, pinged every 50ms by its own goroutine for as long as the test runs.
type healthyTunnel struct {
	pings atomic.Int64
	err   atomic.Pointer[error]
}

func (w *faultWorld) healthyTunnel(t *testing.T) *healthyTunnel {
	t.Helper()
	c := connectThrough(t, w.h.Addr, w.echo.addr())
	ht := &healthyTunnel{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		ht.run(c, stop)
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	ht.check(t)
	return ht
}

func (ht *healthyTunnel) run(c net.Conn, stop <-chan struct{}) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	got := make([]byte, 32)
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		msg := fmt.Sprintf("ping %d", n)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, msg); err != nil {
			ht.err.Store(&err)
			return
		}
		if _, err := io.ReadFull(c, got[:len(msg)]); err != nil {
			ht.err.Store(&err)
			return
		}
		if string(got[:len(msg)]) != msg {
			err := fmt.Errorf("echo %q for %q", got[:len(msg)], msg)
			ht.err.Store(&err)
			return
		}
		ht.pings.Add(1)
	}
}

// check requires the tunnel to have flowed without error until now and to
// carry a few more pings.
func (ht *healthyTunnel) check(t *testing.T) {
	t.Helper()
	before := ht.pings.Load()
	require.Eventually(t, func() bool { return ht.pings.Load() >= before+2 || ht.err.Load() != nil },
		10*time.Second, 5*time.Millisecond)
	if p := ht.err.Load(); p != nil {
		t.Fatalf("the healthy tunnel broke: %v", *p)
	}
}

// connectThrough opens a CONNECT tunnel to target through the proxy at addr
// and requires a 200.
func connectThrough(t *testing.T, addr, target string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	require.NoError(t, err)
	head := readHead(t, c)
	require.True(t, strings.HasPrefix(head, "HTTP/1.1 200 "), head)
	return c
}

// readHead reads a response head byte by byte, leaving the conn raw.
func readHead(t *testing.T, c net.Conn) string {
	t.Helper()
	var b []byte
	one := make([]byte, 1)
	for !strings.HasSuffix(string(b), "\r\n\r\n") {
		_, err := c.Read(one)
		require.NoError(t, err, "partial head %q", b)
		b = append(b, one[0])
	}
	return string(b)
}

// requireClosedByPeer reads c to its end and requires that the other side
// closed it (EOF or reset), not our deadline.
func requireClosedByPeer(t *testing.T, c net.Conn) []byte {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	b, err := io.ReadAll(c)
	if err != nil {
		require.True(t, errors.Is(err, syscall.ECONNRESET), "not closed by the proxy: %v", err)
	}
	return b
}

// TestFaultInjection drives one hopper through every fault in turn while a
// healthy tunnel stays open across all of them. Each fault must give the
// client the answer DESIGN.md's table names, leave no goroutine or file
// descriptor behind once it is over, and leave the healthy tunnel flowing.
func TestFaultInjection(t *testing.T) {
	checkNoLeaks(t)
	w := startFaultWorld(t)
	healthy := w.healthyTunnel(t)

	// methods: CONNECT, and GET (a forward request) where the fault reaches
	// it too; an upstream's own 503 to a forward request is its answer to
	// pass on, not a fault.
	errorCases := []struct {
		name, target string
		methods      []string
		status       int
		hopperError  string
		socksReply   byte
	}{
		{"upstream resets during handshake", "x.reset.test:80", []string{"CONNECT", "GET"}, 502, "upstream-failed", 0x05},
		{"upstream accepts and never answers", "x.stall.test:80", []string{"CONNECT", "GET"}, 504, "timeout", 0x04},
		{"DNS failure at hopper", "nowhere.nxdomain.test:80", []string{"CONNECT", "GET"}, 502, "upstream-failed", 0x04},
		{"DNS failure at the upstream", "nowhere.dnsfail.test:80", []string{"CONNECT"}, 502, "upstream-failed", 0x04},
	}
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t)
			for _, method := range tc.methods {
				r := rawHTTP(t, w.h.Addr, method, tc.target, "", "")
				assert.Equal(t, tc.status, r.status, method)
				assert.Equal(t, tc.hopperError, r.header.Get("Hopper-Error"), method)
				assert.Regexp(t, `^hopper: [^\n]+\n$`, r.body, method)
			}
			s := rawSOCKS5(t, w.h.Addr, "", "", tc.target)
			assert.Equal(t, tc.socksReply, s.reply, "SOCKS5 reply")
			requireBackTo(t, before)
			healthy.check(t)
		})
	}

	t.Run("upstream dies mid-stream", func(t *testing.T) {
		before := snapshot(t)
		c := connectThrough(t, w.h.Addr, "echo.die.test:7")
		payload := strings.Repeat("x", 4*dieAfter)
		go func() { _, _ = io.WriteString(c, payload) }()
		got := requireClosedByPeer(t, c)
		assert.LessOrEqual(t, len(got), dieAfter, "no more than the upstream relayed")
		c.Close()
		requireBackTo(t, before)
		healthy.check(t)
		assertResult(t, w.h, "echo.die.test:7", "interrupted")
	})

	t.Run("client vanishes mid-stream", func(t *testing.T) {
		originDone := make(chan error, 1)
		origin := startPeer(t, "127.0.0.1", func(c net.Conn) {
			chunk := make([]byte, 16<<10)
			for {
				if _, err := c.Write(chunk); err != nil {
					originDone <- err
					return
				}
			}
		})
		before := snapshot(t)
		c := connectThrough(t, w.h.Addr, origin.addr())
		_, err := io.ReadFull(c, make([]byte, 64<<10))
		require.NoError(t, err)
		resetConn(c)
		select {
		case err := <-originDone:
			assert.Error(t, err, "hopper closed the far side once the client vanished")
		case <-time.After(10 * time.Second):
			t.Fatal("the origin still streams after the client vanished")
		}
		requireBackTo(t, before)
		healthy.check(t)
	})

	t.Run("origin half-closes", func(t *testing.T) {
		received := make(chan string, 1)
		origin := startPeer(t, "127.0.0.1", func(c net.Conn) {
			_, _ = io.WriteString(c, "hello from origin")
			_ = c.(*net.TCPConn).CloseWrite()
			b, _ := io.ReadAll(c)
			received <- string(b)
		})
		before := snapshot(t)
		for _, via := range []string{"CONNECT", "SOCKS5"} {
			var c net.Conn
			if via == "CONNECT" {
				c = connectThrough(t, w.h.Addr, origin.addr())
			} else {
				c = socksConnect(t, w.h.Addr, origin.addr())
			}
			// The origin's half-close reaches the client as EOF...
			b, err := io.ReadAll(c)
			require.NoError(t, err, via)
			assert.Equal(t, "hello from origin", string(b), via)
			// ...while the client can still send, and its own
			// half-close ends the exchange.
			_, err = io.WriteString(c, "more from client")
			require.NoError(t, err, via)
			require.NoError(t, c.(*net.TCPConn).CloseWrite())
			select {
			case got := <-received:
				assert.Equal(t, "more from client", got, via)
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: the origin never saw the client's data and EOF", via)
			}
			c.Close()
		}
		requireBackTo(t, before)
		healthy.check(t)
		assertResult(t, w.h, origin.addr(), "ok")
	})
}

// assertResult waits for an access-log line for target and checks its
// result.
func assertResult(t *testing.T, h *inproc, target, result string) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, rec := range h.logs.records("tunnel") {
			if rec["target"] == target {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	for _, rec := range h.logs.records("tunnel") {
		if rec["target"] == target {
			assert.Equal(t, result, rec["result"], "%v", rec)
		}
	}
}

// socksConnect opens a SOCKS5 tunnel (no auth) to an IPv4 target.
func socksConnect(t *testing.T, addr, target string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	tcp, err := net.ResolveTCPAddr("tcp", target)
	require.NoError(t, err)
	req := []byte{0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01}
	req = append(req, tcp.IP.To4()...)
	req = append(req, byte(tcp.Port>>8), byte(tcp.Port))
	_, err = c.Write(req)
	require.NoError(t, err)
	rep := make([]byte, 2+10)
	_, err = io.ReadFull(c, rep)
	require.NoError(t, err)
	require.Equal(t, []byte{0x05, 0x00, 0x05, 0x00}, rep[:4], "method and reply")
	return c
}
