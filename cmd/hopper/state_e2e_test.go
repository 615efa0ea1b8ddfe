package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// redisProc is a redis-server on a free loopback port, no persistence,
// killed at cleanup. The tests need it (.ci/deps installs it): they fail,
// never skip, without it.
type redisProc struct {
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedisServer(t *testing.T) *redisProc {
	t.Helper()
	_, err := exec.LookPath("redis-server")
	require.NoError(t, err, "redis-server is required (apt-get install redis-server, or .ci/deps)")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &redisProc{port: ln.Addr().(*net.TCPAddr).Port, dir: t.TempDir()}
	require.NoError(t, ln.Close())
	r.start(t)
	t.Cleanup(r.kill)
	return r
}

func (r *redisProc) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *redisProc) start(t *testing.T) {
	t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--loglevel", "warning")
	r.cmd.Stdout, r.cmd.Stderr = io.Discard, io.Discard
	require.NoError(t, r.cmd.Start())
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(r.cmd, r.done)
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", r.addr(), time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte("PING\r\n"))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line == "+PONG\r\n"
	}, 10*time.Second, 10*time.Millisecond, "redis-server to answer")
}

func (r *redisProc) kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

// TestServeSharedStateTwoInstances runs two hopper processes on one Redis:
// they rotate as one, keep each other's sticky sessions, honour each
// other's reservations (for the reserved host only), and keep serving
// while Redis is down and after it comes back empty.
func TestServeSharedStateTwoInstances(t *testing.T) {
	rs := startRedisServer(t)
	origin := sourceOrigin(t)
	_, port, _ := net.SplitHostPort(origin)
	dir := t.TempDir()
	list := filepath.Join(dir, "list.txt")
	require.NoError(t, os.WriteFile(list, []byte("direct://127.0.0.221\ndirect://127.0.0.222\ndirect://127.0.0.223\ndirect://127.0.0.224\n"), 0o600))
	single := filepath.Join(dir, "single.txt")
	require.NoError(t, os.WriteFile(single, []byte("direct://127.0.0.225\n"), 0o600))
	conf := filepath.Join(dir, "hopper.yaml")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`pools:
  p: { upstreams: [%s] }
  shop: { upstreams: [%s] }
rules:
  - { host: localhost, pool: shop, reserve: true }
  - { host: "*", pool: p }
state: redis://%s/0?timeout=2s
state-prefix: e2e
max-queue-wait: 300ms
probe-interval: 0s
`, list, single, rs.addr())), 0o600))
	a := startHopper(t, "--config", conf)
	b := startHopper(t, "--config", conf)
	require.NotEmpty(t, a.records("sharing state"), a.log())

	get := func(h *proc, user, target string) (int, string) {
		proxy := "http://" + h.Addr
		if user != "" {
			proxy = "http://" + user + ":x@" + h.Addr
		}
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(mustURL(proxy)), DisableKeepAlives: true}}
		resp, err := client.Get("http://" + target + "/")
		require.NoError(t, err)
		return resp.StatusCode, readAll(resp)
	}

	// One rotation across both: two requests on each, four exits. (Spaced
	// out so that each instance takes its rotation positions one by one.)
	var exits []string
	for _, h := range []*proc{a, a, b, b} {
		code, src := get(h, "", origin)
		require.Equal(t, 200, code, src)
		exits = append(exits, src)
		time.Sleep(30 * time.Millisecond)
	}
	assert.ElementsMatch(t, []string{"127.0.0.221", "127.0.0.222", "127.0.0.223", "127.0.0.224"}, exits)

	// A sticky session bound on A keeps its exit on B.
	_, exit := get(a, "worker-session-abc", origin)
	for range 3 {
		_, src := get(b, "worker-session-abc", origin)
		assert.Equal(t, exit, src, "the session's exit on the other instance")
	}

	// A tunnel on A to the reserved host holds the only exit of its pool:
	// B answers 503 for that host, and serves another host meanwhile.
	shop := "localhost:" + port
	tunnel := holdTunnel(t, a, shop)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(mustURL("http://" + b.Addr)), DisableKeepAlives: true}}
	r, err := client.Get("http://" + shop + "/")
	require.NoError(t, err)
	body := readAll(r)
	assert.Equal(t, 503, r.StatusCode, body)
	assert.Equal(t, "no-upstream", r.Header.Get("Hopper-Error"))
	code, _ := get(b, "", "127.0.0.1:"+port)
	assert.Equal(t, 200, code, "another host is not held")
	require.NoError(t, tunnel.Close())
	require.Eventually(t, func() bool {
		code, _ := get(b, "", shop)
		return code == 200
	}, 10*time.Second, 50*time.Millisecond, "the exit is free once the tunnel ends")

	// Redis goes away mid-traffic and comes back empty: no client sees an
	// error.
	failures := trafficThroughRedisOutage(t, rs, 6, func(w int) (*http.Client, string) {
		h := a
		if w%2 == 1 {
			h = b
		}
		proxy := "http://" + h.Addr
		if w%3 == 0 {
			proxy = fmt.Sprintf("http://w-session-%d:x@%s", w, h.Addr)
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(mustURL(proxy))}}, "http://" + origin + "/"
	}, [3]int{50, 200, 200}, 20*time.Second)
	assert.Empty(t, failures)
	for _, h := range []*proc{a, b} {
		assert.Len(t, h.records("shared state unreachable; serving from local state until it returns"), 1, "logged once")
		require.Eventually(t, func() bool { return len(h.records("shared state reachable again; resynchronising")) > 0 },
			10*time.Second, 50*time.Millisecond, "recovery logged")
	}
	assert.False(t, strings.Contains(a.log(), "redis: connection pool"), "go-redis's own messages go through our logger")
}

// holdTunnel opens a CONNECT tunnel to target through h and requires its
// 200; the tunnel is closed at the end of the test at the latest.
func holdTunnel(t *testing.T, h *proc, target string) net.Conn {
	t.Helper()
	tunnel, err := net.Dial("tcp", h.Addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tunnel.Close() })
	_, err = fmt.Fprintf(tunnel, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(tunnel), nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	return tunnel
}

// trafficThroughRedisOutage keeps workers sending requests while Redis
// goes away and comes back empty: it waits for phases[0] requests served
// (200), kills rs, waits for phases[1] more, starts rs again and waits for
// phases[2] more, each within wait; then it stops the workers. client(w)
// gives worker w its client and the URL it gets. It returns what went
// wrong: errors, and answers other than 200 with their Hopper-Error.
func trafficThroughRedisOutage(t *testing.T, rs *redisProc, workers int, client func(w int) (*http.Client, string), phases [3]int, wait time.Duration) []string {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	served := 0
	stop := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, url := client(w)
			defer c.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url)
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case resp.StatusCode != 200:
					failures = append(failures, resp.Status+" "+resp.Header.Get("Hopper-Error"))
				default:
					served++
				}
				mu.Unlock()
				if resp != nil {
					readAll(resp)
				}
			}
		}()
	}
	var once sync.Once
	stopWorkers := func() { once.Do(func() { close(stop); wg.Wait() }) }
	defer stopWorkers() // when a wait below fails the test too
	waitServed := func(n int) {
		mu.Lock()
		want := served + n
		mu.Unlock()
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return served >= want }, wait, 10*time.Millisecond)
	}
	waitServed(phases[0])
	rs.kill()
	waitServed(phases[1])
	rs.start(t)
	waitServed(phases[2])
	stopWorkers()
	return failures
}

func TestStateFlags(t *testing.T) {
	cfg, err := parseServe(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "memory", cfg.State)
	assert.Equal(t, "hopper", cfg.StatePrefix)

	cfg, err = parseServe([]string{"--state", "rediss://u:s3cret@redis.example:6380/2", "--state-prefix", "prod-eu"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "rediss://u:s3cret@redis.example:6380/2", cfg.State)
	assert.Equal(t, "prod-eu", cfg.StatePrefix)

	for _, bad := range [][]string{
		{"--state", "postgres://u:s3cret@db/1"},
		{"--state", "redis://127.0.0.1:6379/0", "--state-prefix", "has space"},
		{"--state-prefix", ""},
	} {
		_, err := parseServe(bad, io.Discard)
		require.Error(t, err, "%v", bad)
		assert.NotContains(t, err.Error(), "s3cret", "the password never shows")
		assert.Contains(t, err.Error(), "--state", "names the flag")
	}

	conf := filepath.Join(t.TempDir(), "h.yaml")
	require.NoError(t, os.WriteFile(conf, []byte("state: redis://127.0.0.1:6379/3\nstate-prefix: yaml-prefix\n"), 0o600))
	cfg, err = parseServe([]string{"--config", conf}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "redis://127.0.0.1:6379/3", cfg.State)
	assert.Equal(t, "yaml-prefix", cfg.StatePrefix)
}
