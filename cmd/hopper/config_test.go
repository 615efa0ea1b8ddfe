package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func TestParseServeDefaults(t *testing.T) {
	cfg, err := parseServe(nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, defaultServeConfig(), cfg)
	assert.Equal(t, "127.0.0.1:8080", cfg.Listen)
}

func TestParseServeYAMLThenFlags(t *testing.T) {
	path := writeFile(t, "hopper.yaml", "listen: 127.0.0.1:9999\nupstreams: [a.txt, b.txt]\nidle-timeout: 90s\nlog-format: json\nmax-conns: 10\n")
	cfg, err := parseServe([]string{"--config", path, "--upstreams", "c.txt", "--max-conns=20"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9999", cfg.Listen)
	assert.Equal(t, []string{"c.txt"}, cfg.Upstreams, "a flag replaces the file's list")
	assert.Equal(t, 90*time.Second, cfg.IdleTimeout)
	assert.Equal(t, "json", cfg.LogFormat)
	assert.Equal(t, 20, cfg.MaxConns)

	cfg, err = parseServe([]string{"--config=" + path, "--upstreams", "c.txt", "--upstreams", "d.txt"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, []string{"c.txt", "d.txt"}, cfg.Upstreams)
}

func TestParseServeErrorsNameTheKey(t *testing.T) {
	badKey := writeFile(t, "bad.yaml", "listen: 127.0.0.1:1\nlisten-addr: x\n")
	badVal := writeFile(t, "badval.yaml", "idle-timeout: soon\n")
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--bogus"}, []string{"unknown flag --bogus"}},
		{[]string{"--log-level", "loud"}, []string{"--log-level", `"loud"`, "debug, info, warn, error"}},
		{[]string{"--log-format", "xml"}, []string{"--log-format", "console, json"}},
		{[]string{"--rotate", "sometimes"}, []string{"--rotate", "per-request, per-connection, every-N"}},
		{[]string{"--rotate", "every-0"}, []string{"--rotate"}},
		{[]string{"--max-conns", "-1"}, []string{"--max-conns"}},
		{[]string{"--idle-timeout", "0s"}, []string{"--idle-timeout"}},
		{[]string{"--idle-timeout", "abc"}, []string{"--idle-timeout"}},
		{[]string{"--listen", "nonsense"}, []string{"--listen"}},
		{[]string{"--config", badKey}, []string{"bad.yaml:2", `unknown key "listen-addr"`, "listen"}},
		{[]string{"--config", badVal}, []string{"badval.yaml", "line 1"}},
		{[]string{"--config", "/nonexistent/hopper.yaml"}, []string{"--config"}},
		{[]string{"extra"}, []string{`unexpected argument "extra"`}},
	}
	for _, c := range cases {
		_, err := parseServe(c.args, &bytes.Buffer{})
		require.Error(t, err, "%v", c.args)
		msg := err.Error()
		assert.NotContains(t, msg, "\n", "one line: %q", msg)
		for _, w := range c.want {
			assert.Contains(t, msg, w, "%v", c.args)
		}
	}
}

func TestRunExitCodes(t *testing.T) {
	var out, errOut bytes.Buffer
	assert.Equal(t, 0, run(context.Background(), []string{"version"}, &out, &errOut))
	assert.True(t, strings.HasPrefix(out.String(), "hopper "), out.String())

	errOut.Reset()
	assert.Equal(t, 2, run(context.Background(), []string{"serve", "--nope"}, &out, &errOut))
	assert.Equal(t, "hopper: unknown flag --nope (see 'hopper serve --help')\n", errOut.String())

	errOut.Reset()
	assert.Equal(t, 2, run(context.Background(), []string{"frobnicate"}, &out, &errOut))
	assert.Contains(t, errOut.String(), "unknown command")

	out.Reset()
	assert.Equal(t, 0, run(context.Background(), []string{"serve", "--help"}, &out, &errOut))
	assert.Contains(t, out.String(), "--drain-timeout")
}
