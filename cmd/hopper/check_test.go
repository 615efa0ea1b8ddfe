package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/judge"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

// runCheck runs the real binary's `hopper check args...` and returns its
// exit code, standard output and standard error.
func runCheck(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, hopperBin, append([]string{"check"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		require.True(t, errors.As(err, &ee), "%v", err)
		code = ee.ExitCode()
	}
	return code, stdout.String(), stderr.String()
}

// checkJudge runs a judge on loopback and returns its URL.
func checkJudge(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&judge.Server{ShutdownTimeout: time.Second}).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "http://" + ln.Addr().String() + "/"
}

func deadAddr(t *testing.T) string {
	t.Helper()
	return testnet.RefusingAddr(t, "127.0.0.1")
}

// TestCheckCommand checks a list through the binary (a hopper instance as
// the good upstream, over HTTP and SOCKS5, and a closed port), with the
// first judge dead; the --out list then serves through `hopper serve`.
func TestCheckCommand(t *testing.T) {
	upstream := startHopper(t)
	live := checkJudge(t)
	dead := "http://" + deadAddr(t) + "/"
	dir := t.TempDir()
	list := filepath.Join(dir, "list.txt")
	closed := deadAddr(t)
	require.NoError(t, os.WriteFile(list, []byte("http://"+upstream.Addr+"\nsocks5h://"+upstream.Addr+"\n"+closed+"\nnot an entry\n"), 0o600))
	out := filepath.Join(dir, "good.txt")

	code, stdout, stderr := runCheck(t, "--upstreams", list, "--judge", dead, "--judge", live,
		"--timeout", "5s", "--out", out, "--format", "json")
	require.Equal(t, 0, code, stderr)
	var doc struct {
		Summary struct {
			Results map[string]int `json:"results"`
		} `json:"summary"`
		Results []struct {
			Upstream string  `json:"upstream"`
			Result   string  `json:"result"`
			ExitIP   string  `json:"exit_ip"`
			Judge    string  `json:"judge"`
			Score    float64 `json:"score"`
		} `json:"results"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &doc), stdout)
	assert.Equal(t, 2, doc.Summary.Results["ok"])
	assert.Equal(t, 1, doc.Summary.Results["refused"])
	require.Len(t, doc.Results, 3)
	for _, r := range doc.Results[:2] {
		assert.Equal(t, "ok", r.Result)
		assert.Equal(t, "127.0.0.1", r.ExitIP)
		assert.Equal(t, live, r.Judge)
		assert.Positive(t, r.Score)
	}
	assert.Contains(t, stderr, "skipped: "+list+":4:")
	assert.Contains(t, stderr, "[3/3] ", "plain progress lines when not on a terminal")
	assert.Contains(t, stderr, "wrote 2 good upstreams to "+out)

	st, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	p := startHopper(t, "--upstreams", out)
	body := curl(t, "-x", "http://"+p.Addr, live)
	var rep judge.Report
	require.NoError(t, json.Unmarshal([]byte(body), &rep), body)
	assert.Equal(t, "127.0.0.1", rep.IP)
	require.Eventually(t, func() bool {
		for _, rec := range p.records("tunnel") {
			if up, _ := rec["upstream"].(string); strings.Contains(up, upstream.Addr) {
				return true
			}
		}
		return false
	}, 5*time.Second, 20*time.Millisecond, "the request left through the checked upstream\n%s", p.log())

	code, stdout, _ = runCheck(t, "--upstreams", list, "--format", "csv", "--timeout", "5s")
	require.Equal(t, 0, code)
	rows, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 4)
	assert.Equal(t, "upstream", rows[0][0])
}

func TestCheckCommandExitStatus(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "dead.txt")
	require.NoError(t, os.WriteFile(list, []byte(deadAddr(t)+"\n"), 0o600))
	code, stdout, stderr := runCheck(t, "--upstreams", list, "--timeout", "5s")
	assert.Equal(t, 1, code, "no good upstream")
	assert.Contains(t, stdout, "results:   ok 0, refused 1")
	assert.Contains(t, stderr, "no upstream passed the check")

	for _, args := range [][]string{
		{},
		{"--upstreams", list, "--format", "xml"},
		{"--upstreams", list, "--min-anonymity", "elite"},
		{"--upstreams", list, "--min-anonymity", "paranoid", "--judge", "http://127.0.0.1:1/"},
		{"--upstreams", list, "--judge", "ftp://x/"},
		{"--upstreams", list, "--concurrency", "0"},
		{"--upstreams", list, "--timeout", "0s"},
		{"--upstreams", list, "--bogus"},
	} {
		code, _, stderr := runCheck(t, args...)
		assert.Equal(t, 2, code, "%v: %s", args, stderr)
	}
	code, stdout, _ = runCheck(t, "--help")
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "--min-anonymity")
}
