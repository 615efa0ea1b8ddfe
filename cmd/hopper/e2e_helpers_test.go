package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// hopperBin is the binary built once for the end-to-end tests.
var hopperBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hopper-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hopperBin = filepath.Join(dir, "hopper")
	build := exec.Command("go", "build", "-race", "-o", hopperBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building hopper:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		// go-redis starts a process-wide clock goroutine from init().
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/redis/go-redis/v9/internal/pool.startGlobalTimeCache.func1")); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running hopper process.
type proc struct {
	cmd  *exec.Cmd
	Addr string // the proxy's listen address

	mu    sync.Mutex
	lines []string // log lines (JSON)
	done  chan struct{}
	err   error
}

// startHopper runs `hopper serve --listen 127.0.0.1:0 --log-format json args...`
// and waits until it reports its address. The process is stopped at cleanup.
func startHopper(t *testing.T, args ...string) *proc {
	t.Helper()
	all := append([]string{"serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--drain-timeout", "2s"}, args...)
	cmd := exec.Command(hopperBin, all...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	cmd.Stdout = io.Discard
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, done: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "listening" {
				if a, ok := rec["addr"].(string); ok {
					select {
					case addrc <- a:
					default:
					}
				}
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	select {
	case p.Addr = <-addrc:
	case <-p.done:
		t.Fatalf("hopper exited early: %v\n%s", p.err, p.log())
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("hopper did not report its address\n%s", p.log())
	}
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// records returns the log lines whose msg equals msg.
func (p *proc) records(msg string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, l := range p.lines {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func (p *proc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// stop sends SIGTERM and waits; the exit must be clean.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("hopper did not exit after SIGTERM\n%s", p.log())
	}
}

// sourceOrigin is an HTTP origin on 127.0.0.1 that answers with the source IP
// it saw, so tests can tell egress addresses apart.
func sourceOrigin(t *testing.T) string { return sourceOriginOn(t, "127.0.0.1:0") }

// sourceOriginOn is sourceOrigin listening on addr.
func sourceOriginOn(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprint(w, host)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// curl runs curl with args and returns its stdout; it fails the test on a
// non-zero exit.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "10"}, args...)...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("curl %v: %v %s", args, err, stderr)
	}
	return string(out)
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
