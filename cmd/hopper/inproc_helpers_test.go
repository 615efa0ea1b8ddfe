package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/hopper-proxy/hopper/relay"
)

// inproc is `hopper serve` running inside the test process, so that its
// goroutines and file descriptors can be counted.
type inproc struct {
	Addr   string
	logs   *lineLog // stderr: the JSON log
	stdout *lineLog // what serve prints for people (admin endpoints, ...)
}

// startInProcess runs serve with args (after --listen 127.0.0.1:0 and JSON
// logs) until the test ends, then stops it and requires a clean return.
func startInProcess(t *testing.T, args ...string) *inproc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, logs := &lineLog{}, &lineLog{}
	all := append([]string{"--listen", "127.0.0.1:0", "--log-format", "json", "--drain-timeout", "0s"}, args...)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, all, stdout, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("serve did not return after its context was cancelled")
		}
	})
	var addr string
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("serve returned early: %v\n%s", err, logs.String())
		default:
		}
		for _, rec := range logs.records("listening") {
			addr, _ = rec["addr"].(string)
		}
		return addr != ""
	}, 15*time.Second, 5*time.Millisecond)
	return &inproc{Addr: addr, logs: logs, stdout: stdout}
}

// lineLog collects the JSON log lines serve writes.
type lineLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// records returns the lines whose msg is msg.
func (l *lineLog) records(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// countFDs counts this process's open file descriptors.
func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// checkNoLeaks registers, first, a cleanup that runs after every other: no
// goroutine started during the test may survive it (goleak) and the count
// of open file descriptors must come back to where it was.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	fds := countFDs(t)
	t.Cleanup(func() {
		goleak.VerifyNone(t, ignore)
		requireSettles(t, "file descriptors", fds, func() int { return countFDs(t) })
	})
}

// requireSettles waits (a little) for count() to come back to at most base.
func requireSettles(t *testing.T, what string, base int, count func() int) {
	t.Helper()
	// Closed splice pipes sit in the runtime's pool until a GC frees them.
	deadline := time.Now().Add(5 * time.Second)
	n := count()
	for n > base && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
		n = count()
	}
	if n > base && what == "file descriptors" {
		out, _ := exec.Command("ss", "-tanp").Output()
		var mine []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "pid="+strconv.Itoa(os.Getpid())+",") {
				mine = append(mine, l)
			}
		}
		t.Logf("this process's sockets:\n%s", strings.Join(mine, "\n"))
		ents, _ := os.ReadDir("/proc/self/fd")
		var links []string
		for _, e := range ents {
			l, _ := os.Readlink("/proc/self/fd/" + e.Name())
			links = append(links, e.Name()+"->"+l)
		}
		t.Logf("fds: %s", strings.Join(links, " "))
	}
	require.LessOrEqual(t, n, base, "%s leaked: %d, was %d", what, n, base)
}

// resources is a snapshot of file descriptors and goroutines.
type resources struct{ fds, goroutines int }

func snapshot(t *testing.T) resources {
	return resources{fds: countFDs(t), goroutines: runtime.NumGoroutine()}
}

// requireBackTo waits for fds and goroutines to return to u.
func requireBackTo(t *testing.T, u resources) {
	t.Helper()
	requireSettles(t, "file descriptors", u.fds, func() int { return countFDs(t) })
	requireSettles(t, "goroutines", u.goroutines, runtime.NumGoroutine)
}

// peer is a loopback TCP server running handle per connection; at cleanup
// it closes every connection and waits for its goroutines.
type peer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startPeer(t *testing.T, ip string, handle func(net.Conn)) *peer {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	require.NoError(t, err)
	p := &peer{ln: ln, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns[c] = struct{}{}
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				handle(c)
				c.Close()
				p.mu.Lock()
				delete(p.conns, c)
				p.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *peer) addr() string { return p.ln.Addr().String() }

// upstreamBehaviour is what a test upstream proxy does once it has read a
// request (CONNECT, or a forward request in absolute form); br holds any
// bytes read past the head.
type upstreamBehaviour func(c net.Conn, br *bufio.Reader, req *http.Request)

// startUpstream is an HTTP proxy on ip with the given behaviour, one request
// per connection.
func startUpstream(t *testing.T, ip string, behave upstreamBehaviour) *peer {
	return startPeer(t, ip, func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		behave(c, br, req)
	})
}

// tunnelTo is the well-behaved upstream: for CONNECT it connects to the
// target, answers 200 and relays, half-closes included; a forward request
// it sends on and streams the response back, then closes.
func tunnelTo(c net.Conn, br *bufio.Reader, req *http.Request) {
	target := req.Host
	if req.Method != http.MethodConnect && req.URL.Port() == "" {
		target = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	out, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer out.Close()
	if req.Method != http.MethodConnect {
		req.Close = true
		if err := req.Write(out); err == nil {
			_, _ = io.Copy(c, out)
		}
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := out.Write(b); err != nil {
			return
		}
	}
	_, _ = relay.Pipe(c, out, 0)
}

// resetConn closes c with a TCP reset.
func resetConn(c net.Conn) {
	_ = c.(*net.TCPConn).SetLinger(0)
	_ = c.Close()
}
