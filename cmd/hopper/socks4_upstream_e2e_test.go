package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSOCKS4Upstreams chains hopper through socks4:// and socks4a://
// upstreams: a second hopper, whose SOCKS4 front end is an independent
// implementation of the protocol, serves them, and its access log shows
// the protocol and the user ID each one arrived with.
func TestSOCKS4Upstreams(t *testing.T) {
	origin := sourceOrigin(t)
	up := startHopper(t, "--listen", "127.0.0.161:0")
	list := filepath.Join(t.TempDir(), "list.txt")
	require.NoError(t, os.WriteFile(list, []byte("socks4://scraper-7@"+up.Addr+"\nsocks4a://"+up.Addr+"\n"), 0o600))
	h := startHopper(t, "--upstreams", list, "--refresh", "1h")

	_, port, err := net.SplitHostPort(origin)
	require.NoError(t, err)
	named := net.JoinHostPort("localhost", port)
	for range 2 {
		// The upstream hopper reaches the origin with direct egress, from
		// 127.0.0.1, whichever SOCKS4 flavour brought the stream.
		assert.Equal(t, "127.0.0.1", curl(t, "-x", "http://"+h.Addr, "http://"+named+"/"))
	}
	require.Eventually(t, func() bool { return len(up.records("tunnel")) >= 2 }, 10*time.Second, 20*time.Millisecond, up.log())
	targets := map[string]any{}
	for _, rec := range up.records("tunnel") {
		assert.Equal(t, "socks4", rec["proto"], "%v", rec)
		targets[fmt.Sprint(rec["target"])] = rec["user"]
	}
	assert.Equal(t, map[string]any{
		"127.0.0.1:" + port: "scraper-7", // socks4: resolved here, the user ID sent
		named:               "",          // socks4a: the name handed over
	}, targets)
}
