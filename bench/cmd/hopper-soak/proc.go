package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// buildHopper builds ./cmd/hopper of the module the tool runs in.
func buildHopper(ctx context.Context, dir string, race bool) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(dir, "hopper")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/hopper")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building hopper: %w\n%s", err, out)
	}
	return bin, nil
}

// hopperProc is the hopper process under soak.
type hopperProc struct {
	cmd     *exec.Cmd
	pid     int
	addr    string // proxy listen address
	logPath string

	mu         sync.Mutex
	metricsURL string // /metrics of --admin, "" when hopper has none

	waitErr error
	done    chan struct{}
}

// startHopper runs `hopper serve` on a free loopback port with the list,
// logging warnings and errors as JSON to a file (the access log would be
// gigabytes), with --admin on loopback when the binary has it.
func startHopper(ctx context.Context, bin, dir, list string) (*hopperProc, error) {
	help, _ := exec.CommandContext(ctx, bin, "serve", "--help").CombinedOutput()
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--listen", addr, "--upstreams", list,
		"--refresh", "5s", "--quarantine", "20s", "--connect-timeout", "3s",
		"--log-level", "warn", "--log-format", "json", "--drain-timeout", "5s"}
	hasAdmin := bytes.Contains(help, []byte("--admin"))
	if hasAdmin {
		args = append(args, "--admin", "127.0.0.1:0")
	}
	logPath := filepath.Join(dir, "hopper.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &hopperProc{cmd: cmd, pid: cmd.Process.Pid, addr: addr, logPath: logPath, done: make(chan struct{})}
	go func() {
		// Admin endpoints are printed on stdout: "admin: metrics  URL".
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 3 && f[0] == "admin:" && f[1] == "metrics" {
				h.setMetrics(f[2])
			}
		}
	}()
	go func() {
		h.waitErr = cmd.Wait()
		close(h.done)
	}()
	deadline := time.Now().Add(20 * time.Second)
	up := false
	for time.Now().Before(deadline) {
		if !up {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				_ = c.Close()
				up = true
			}
		}
		if up && (!hasAdmin || h.metrics() != "") {
			return h, nil
		}
		select {
		case <-h.done:
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("hopper exited: %v\n%s", h.waitErr, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if up {
		return h, nil // no admin line: go on without goroutine counts
	}
	h.kill()
	return nil, errors.New("hopper does not accept connections on " + addr)
}

// freePort returns a loopback address nothing listens on right now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

func (h *hopperProc) setMetrics(u string) {
	h.mu.Lock()
	h.metricsURL = u
	h.mu.Unlock()
}

// metrics is the /metrics URL, "" when hopper has no --admin.
func (h *hopperProc) metrics() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.metricsURL
}

func (h *hopperProc) hup() { _ = h.cmd.Process.Signal(syscall.SIGHUP) }

// stop sends SIGTERM and waits up to grace, then kills.
func (h *hopperProc) stop(grace time.Duration) error {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
		return h.waitErr
	case <-time.After(grace):
		h.kill()
		return fmt.Errorf("did not exit within %v of SIGTERM; killed", grace)
	}
}

func (h *hopperProc) kill() {
	select {
	case <-h.done:
	default:
		_ = h.cmd.Process.Kill()
		<-h.done
	}
}

// logCount counts log records at level.
func (h *hopperProc) logCount(level string) int {
	data, _ := os.ReadFile(h.logPath)
	return bytes.Count(data, []byte(`"level":"`+level+`"`))
}

// warnings lists hopper's warning and error messages by count, most
// frequent first, at most n of them.
func (h *hopperProc) warnings(n int) []string {
	data, _ := os.ReadFile(h.logPath)
	counts := map[string]int{}
	for _, line := range bytes.Split(data, []byte("\n")) {
		var rec struct{ Level, Msg string }
		if json.Unmarshal(line, &rec) == nil && (rec.Level == "warn" || rec.Level == "error") {
			counts[rec.Level+": "+rec.Msg]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return counts[keys[i]] > counts[keys[j]] })
	var out []string
	for _, k := range keys[:min(n, len(keys))] {
		out = append(out, fmt.Sprintf("%6d  %s", counts[k], k))
	}
	return out
}

// panics counts Go panics in hopper's stderr.
func (h *hopperProc) panics() int {
	data, _ := os.ReadFile(h.logPath)
	return bytes.Count(data, []byte("panic: "))
}

// sample is hopper's resource use at one moment.
type sample struct {
	when       string
	ok         bool
	goroutines int // -1 when hopper exposes none
	threads    int
	fds        int
	rssKiB     int
}

func (h *hopperProc) sample(when string) sample {
	s := sample{when: when, goroutines: -1}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.pid))
	if err != nil {
		return s
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "Threads":
			s.threads, _ = strconv.Atoi(f[0])
		case "VmRSS":
			s.rssKiB, _ = strconv.Atoi(f[0])
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", h.pid))
	if err != nil {
		return s
	}
	s.fds = len(ents)
	s.ok = true
	if u := h.metrics(); u != "" {
		s.goroutines = scrapeGauge(u, "go_goroutines")
	}
	return s
}

// scrapeGauge reads one unlabelled gauge from a Prometheus text endpoint;
// -1 when it cannot.
func scrapeGauge(url, name string) int {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int(f)
			}
		}
	}
	return -1
}

func (s sample) goroutinesText() string {
	if s.goroutines < 0 {
		return "n/a"
	}
	return strconv.Itoa(s.goroutines)
}

func (s sample) row() string {
	if !s.ok {
		return fmt.Sprintf("%-24s (process gone)", s.when)
	}
	return fmt.Sprintf("%-24s %10s %8d %8d %10d", s.when, s.goroutinesText(), s.threads, s.fds, s.rssKiB)
}

func (s sample) short() string {
	return fmt.Sprintf("goroutines %s threads %d fds %d RSS %d KiB", s.goroutinesText(), s.threads, s.fds, s.rssKiB)
}
