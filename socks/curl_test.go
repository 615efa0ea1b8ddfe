package socks

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet/dialtest"
)

// curl is a real client for every protocol variant; the -hostname and 4a
// forms must hand the name to the Dialer unresolved.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl not installed: make test installs it (.ci/deps)")
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello from origin")
	}))
	defer origin.Close()
	_, port, err := net.SplitHostPort(origin.Listener.Addr().String())
	require.NoError(t, err)
	byIP := net.JoinHostPort("127.0.0.1", port)
	byName := net.JoinHostPort("localhost", port)

	cases := []struct {
		flag, host, target string
		proto              dial.Protocol
	}{
		{"--socks5", byIP, byIP, dial.ProtocolSOCKS5},
		{"--socks5-hostname", byName, byName, dial.ProtocolSOCKS5},
		{"--socks4", byIP, byIP, dial.ProtocolSOCKS4},
		{"--socks4a", byName, byName, dial.ProtocolSOCKS4},
	}
	for _, tc := range cases {
		t.Run(tc.flag, func(t *testing.T) {
			rec := &dialtest.Recorder{Next: &dial.Direct{}}
			p := startProxy(t, Config{Dialer: rec})
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			// -q skips any .curlrc; a bare environment keeps *_proxy and
			// NO_PROXY variables out of the way.
			cmd := exec.CommandContext(ctx, curl, "-q", "-sS", "--max-time", "10",
				tc.flag, p.addr, "http://"+tc.host+"/")
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "curl: %s", out)
			assert.Equal(t, "hello from origin", string(out))

			logs := p.tunnelLogs(t, 1)
			reqs := rec.Requests()
			require.Len(t, reqs, 1)
			assert.Equal(t, tc.target, reqs[0].Target)
			assert.Equal(t, tc.proto, reqs[0].Protocol)
			require.Len(t, logs, 1)
			assert.Equal(t, "ok", field(logs[0], "result"))
		})
	}
}
