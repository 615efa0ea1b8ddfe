package main

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIPv6EndToEnd: hopper listening on ::1 carries curl's forward,
// CONNECT and SOCKS5 requests to an origin on ::1, and egresses from a
// direct://::1 entry.
func TestIPv6EndToEnd(t *testing.T) {
	origin := "http://" + sourceOriginOn(t, "[::1]:0") + "/"
	list := writeFile(t, "list.txt", "direct://::1\n")

	h := startHopper(t, "--listen", "[::1]:0", "--upstreams", list)
	host, port, err := net.SplitHostPort(h.Addr)
	require.NoError(t, err)
	require.Equal(t, "::1", host)
	proxy := "[::1]:" + port
	assert.Equal(t, "::1", curl(t, "-x", "http://"+proxy, origin), "forward")
	assert.Equal(t, "::1", curl(t, "-p", "-x", "http://"+proxy, origin), "CONNECT")
	assert.Equal(t, "::1", curl(t, "--socks5", proxy, origin), "SOCKS5 with an IPv6 address")
}
