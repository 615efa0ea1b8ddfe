package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/judge"
)

// `hopper judge --tls-listen` serves a second, TLS port whose reports carry
// the JA4 and HTTP/2 fingerprints; curl stands in for any client.
func TestJudgeTLSListen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, hopperBin, "judge", "--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0", "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	urls := make(chan string, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "listening" {
				if u, ok := rec["judge"].(string); ok {
					urls <- u
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	var plain, secure string
	for range 2 {
		select {
		case u := <-urls:
			if strings.HasPrefix(u, "https://") {
				secure = u
			} else {
				plain = u
			}
		case <-time.After(20 * time.Second):
			t.Fatal("hopper judge did not report both ports")
		}
	}
	for _, tc := range []struct{ url, flag string }{{secure, "--http2"}, {secure, "--http1.1"}, {plain, "--http1.1"}} {
		out, err := exec.CommandContext(ctx, "curl", "-sS", "-k", tc.flag, tc.url).Output()
		require.NoError(t, err, "%s %s", tc.flag, tc.url)
		var rep judge.Report
		require.NoError(t, json.Unmarshal(out, &rep), "%s", out)
		assert.Equal(t, "127.0.0.1", rep.IP)
		assert.NotEmpty(t, rep.HeaderOrder, "header order on every port")
		if tc.url == plain {
			assert.Nil(t, rep.TLS)
			continue
		}
		require.NotNil(t, rep.TLS)
		assert.Regexp(t, `^t1[23]i\d{4}h[12]_[0-9a-f]{12}_[0-9a-f]{12}$`, rep.TLS.JA4, "no SNI for an IP address")
		if tc.flag == "--http2" {
			require.NotNil(t, rep.HTTP2)
			assert.NotEmpty(t, rep.HTTP2.Akamai)
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	<-done
	assert.NoError(t, cmd.Wait())
}

func TestJudgeTLSFlagsAreChecked(t *testing.T) {
	for _, args := range [][]string{
		{"--tls-cert", "a.pem"},
		{"--tls-listen", "127.0.0.1:0", "--tls-cert", "a.pem"},
		{"--tls-listen", "127.0.0.1:0", "--tls-cert", "a.pem", "--tls-key", "b.pem", "--ca-dir", "x"},
		{"--tls-listen", "127.0.0.1:0", "--ca-dir", t.TempDir()},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), append([]string{"judge", "--listen", "127.0.0.1:0"}, args...), io.Discard, &stderr)
		assert.Equal(t, 2, code, "%v: %s", args, stderr.String())
		assert.Contains(t, stderr.String(), "--", "the message names the flag")
	}
}
