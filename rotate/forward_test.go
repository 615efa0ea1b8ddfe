package rotate

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

// forwardGet sends one absolute-form GET for origin over out (a connection
// to an HTTP proxy) and returns the body: the source address the origin saw.
func forwardGet(t testing.TB, out *dial.Outbound, origin string) string {
	t.Helper()
	require.True(t, out.Proxy, "a forward request through an HTTP upstream talks to the proxy")
	var b strings.Builder
	fmt.Fprintf(&b, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\n", origin, origin)
	if out.ProxyAuthorization != "" {
		fmt.Fprintf(&b, "Proxy-Authorization: %s\r\n", out.ProxyAuthorization)
	}
	b.WriteString("\r\n")
	require.NoError(t, out.Conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err := io.WriteString(out.Conn, b.String())
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(out.Conn), nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.NoError(t, out.Conn.SetDeadline(time.Time{}))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	return string(body)
}

func TestRotationModesForForwardRequests(t *testing.T) {
	origin := startHTTPOrigin(t)
	host := strings.TrimPrefix(origin.URL, "http://")
	ips := []string{"127.0.0.21", "127.0.0.22", "127.0.0.23"}
	var entries []string
	for _, ip := range ips {
		entries = append(entries, "http://u:p@"+startHTTPProxy(t, ip, proxyOpts{auth: func(u, p string) bool { return u == "u" && p == "p" }}).addr)
	}
	// Two client connections (ConnID 1 and 2), six keep-alive requests each,
	// interleaved.
	cases := []struct {
		rotate string
		want   map[uint64][]string
	}{
		{"per-request", map[uint64][]string{ // one global round robin
			1: {ips[0], ips[2], ips[1], ips[0], ips[2], ips[1]},
			2: {ips[1], ips[0], ips[2], ips[1], ips[0], ips[2]},
		}},
		{"per-connection", map[uint64][]string{
			1: {ips[1], ips[1], ips[1], ips[1], ips[1], ips[1]},
			2: {ips[2], ips[2], ips[2], ips[2], ips[2], ips[2]},
		}},
		{"every-2", map[uint64][]string{
			1: {ips[1], ips[1], ips[2], ips[2], ips[0], ips[0]},
			2: {ips[2], ips[2], ips[0], ips[0], ips[1], ips[1]},
		}},
	}
	for _, c := range cases {
		t.Run(c.rotate, func(t *testing.T) {
			r, err := ParseRotation(c.rotate)
			require.NoError(t, err)
			p := newTestPool(t, Config{Rotate: r}, entries...)
			got := map[uint64][]string{}
			reused := 0
			for seq := range 6 {
				for _, conn := range []uint64{1, 2} {
					out, err := p.Dial(context.Background(), &dial.Request{
						Target: host, Protocol: dial.ProtocolHTTPForward, Forward: true, ConnID: conn, Seq: seq,
					})
					require.NoError(t, err)
					if out.Reused {
						reused++
					}
					got[conn] = append(got[conn], forwardGet(t, out, host))
					out.Done(true)
				}
			}
			assert.Equal(t, c.want, got)
			assert.Positive(t, reused, "keep-alive connections to the upstreams are reused")
		})
	}
}

func TestForwardThroughHTTPSAndNonHTTPUpstreams(t *testing.T) {
	origin := startHTTPOrigin(t)
	host := strings.TrimPrefix(origin.URL, "http://")
	srvTLS, roots := testCA(t)
	hs := startHTTPProxy(t, "127.0.0.24", proxyOpts{tls: srvTLS})
	s := startSOCKSProxy(t, "127.0.0.25", proxyOpts{})
	p := newTestPool(t, Config{TLS: &tls.Config{RootCAs: roots}, MaxIdlePerUpstream: -1}, "https://"+hs.addr, "socks5://"+s.addr)

	out, err := p.Dial(context.Background(), &dial.Request{Target: host, Forward: true})
	require.NoError(t, err)
	assert.IsType(t, &tls.Conn{}, out.Conn)
	assert.Empty(t, out.ProxyAuthorization)
	assert.Equal(t, "127.0.0.24", forwardGet(t, out, host))
	out.Done(true) // keeping is off: closed

	out, err = p.Dial(context.Background(), &dial.Request{Target: host, Forward: true})
	require.NoError(t, err)
	assert.False(t, out.Proxy, "a SOCKS upstream gives a tunnel to the target")
	assert.IsType(t, &net.TCPConn{}, out.Conn)
	_, err = io.WriteString(out.Conn, "GET / HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(out.Conn), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, "127.0.0.25", string(body))
	out.Done(false)

	out, err = p.Dial(context.Background(), &dial.Request{Target: host, Forward: true})
	require.NoError(t, err)
	assert.False(t, out.Reused, "nothing kept with MaxIdlePerUpstream < 0")
	out.Done(false)
}
