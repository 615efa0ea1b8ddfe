package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIPv6EndToEnd: hopper listening on ::1 carries curl's forward,
// CONNECT and SOCKS5 requests to an origin on ::1, and egresses from a
// direct://::1 entry.
func TestIPv6EndToEnd(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
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
	origin := "http://" + ln.Addr().String() + "/"
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
