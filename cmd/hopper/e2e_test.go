package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeDirectEveryClientMode runs the binary as `make run` does (no
// upstreams: direct egress) and drives it with curl in each client mode.
func TestServeDirectEveryClientMode(t *testing.T) {
	origin := sourceOrigin(t)
	tlsOrigin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "tls-ok")
	}))
	defer tlsOrigin.Close()
	tlsAddr := strings.TrimPrefix(tlsOrigin.URL, "https://")

	h := startHopper(t)
	assert.NotEmpty(t, h.records("egressing directly"), "a pool-less hopper says it is a plain proxy")

	assert.Equal(t, "127.0.0.1", curl(t, "-x", "http://"+h.Addr, "http://"+origin+"/"))
	assert.Equal(t, "127.0.0.1", curl(t, "-p", "-x", "http://"+h.Addr, "http://"+origin+"/"))
	assert.Equal(t, "tls-ok", curl(t, "-k", "-x", "http://"+h.Addr, "https://"+tlsAddr+"/"))
	assert.Equal(t, "127.0.0.1", curl(t, "--socks5", h.Addr, "http://"+origin+"/"))
	assert.Equal(t, "tls-ok", curl(t, "-k", "--socks5-hostname", h.Addr, "https://localhost:"+strings.Split(tlsAddr, ":")[1]+"/"))
	assert.Equal(t, "127.0.0.1", curl(t, "--socks4a", h.Addr, "http://"+origin+"/"))

	// One access-log line per request or tunnel, naming the protocol.
	require.Eventually(t, func() bool { return len(h.records("tunnel")) >= 6 }, 5*time.Second, 50*time.Millisecond, h.log())
	protos := map[string]bool{}
	for _, rec := range h.records("tunnel") {
		protos[fmt.Sprint(rec["proto"])] = true
	}
	for _, p := range []string{"http", "connect", "socks5", "socks4"} {
		assert.True(t, protos[p], "access log has proto %s: %v", p, protos)
	}
}

// TestServeSIGTERMExitsZero: a signal stops the process cleanly.
func TestServeSIGTERMExitsZero(t *testing.T) {
	h := startHopper(t)
	h.signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	require.NoError(t, h.err, h.log())
}

func TestServeBadFlagExitsNonZero(t *testing.T) {
	out, err := exec.Command(hopperBin, "serve", "--log-level", "verbose").CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 2, ee.ExitCode())
	assert.Equal(t, 1, strings.Count(string(out), "\n"), "one line: %q", out)
	assert.Contains(t, string(out), "--log-level")
}

// TestServeRoundRobinAndReload rotates over direct://127.0.0.x egresses, then
// edits the list and sends SIGHUP under concurrent load.
func TestServeRoundRobinAndReload(t *testing.T) {
	origin := sourceOrigin(t)
	list := filepath.Join(t.TempDir(), "list.txt")
	require.NoError(t, os.WriteFile(list, []byte("direct://127.0.0.11\ndirect://127.0.0.12\n# comment\ndirect://127.0.0.13\n"), 0o600))
	h := startHopper(t, "--upstreams", list, "--refresh", "1h")

	var seen []string
	for i := 0; i < 6; i++ {
		seen = append(seen, curl(t, "-x", "http://"+h.Addr, "http://"+origin+"/"))
	}
	// Strict round robin: a rotation of the list, twice.
	require.Len(t, seen, 6)
	assert.Equal(t, seen[:3], seen[3:], "wraps around in order: %v", seen)
	assert.ElementsMatch(t, []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, seen[:3])

	// SIGHUP with a new list under 50 concurrent clients: no errors, new upstream used.
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]int{}
	var failures []string
	stop := make(chan struct{})
	for w := 0; w < 50; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(mustURL("http://" + h.Addr))}}
			defer client.CloseIdleConnections()
			for i := 0; i < 200; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://" + origin + "/")
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				body := readAll(resp)
				mu.Lock()
				if resp.StatusCode != 200 {
					failures = append(failures, resp.Status)
				}
				got[body]++
				mu.Unlock()
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, os.WriteFile(list, []byte("direct://127.0.0.11\ndirect://127.0.0.14\n"), 0o600))
	h.signal(syscall.SIGHUP)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got["127.0.0.14"] > 0
	}, 10*time.Second, 20*time.Millisecond, "new upstream receives traffic")
	close(stop)
	wg.Wait()
	assert.Empty(t, failures)
}
