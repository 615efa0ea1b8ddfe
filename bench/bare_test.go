package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

// startBareRelay serves ServeBareRelay on a loopback port until the test
// ends, and checks it returns cleanly then.
func startBareRelay(t *testing.T, upstream string) string {
	t.Helper()
	ln := testnet.Listen(t, "")
	testnet.Go(t, "bare relay", func(ctx context.Context) error { return ServeBareRelay(ctx, ln, upstream) })
	return ln.Addr().String()
}

// The bare relay carries bytes both ways over both fronts and passes each
// half-close on.
func TestBareRelayCarriesBothFronts(t *testing.T) {
	ctx := testContext(t)
	o := testOrigins(t)
	relay := startBareRelay(t, "")
	chained := startBareRelay(t, relay)
	payload := make([]byte, 256<<10)
	_, _ = rand.Read(payload)
	for _, r := range []route{{front: FrontCONNECT, proxy: relay}, {front: FrontSOCKS5, proxy: relay}, {front: FrontCONNECT, proxy: chained}, {front: FrontSOCKS5, proxy: chained}} {
		name := r.front.String()
		if r.proxy == chained {
			name += " chained"
		}
		t.Run(name, func(t *testing.T) {
			c, err := r.dial(ctx, o.echo.Addr().String())
			require.NoError(t, err)
			defer c.Close()
			go func() {
				_, _ = c.Write(payload)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			require.NoError(t, err, "the echo's EOF comes back after the client's")
			assert.True(t, bytes.Equal(payload, got), "echoed %d of %d bytes", len(got), len(payload))
		})
	}
}

// An unreachable target, or an unreachable upstream for a chained relay,
// gets a refusal in the client's protocol; a request that is neither
// CONNECT nor SOCKS5 gets the connection closed.
func TestBareRelayRefuses(t *testing.T) {
	ctx := testContext(t)
	o := testOrigins(t)
	relay := startBareRelay(t, "")
	target := testnet.RefusingAddr(t, "127.0.0.1")
	orphan := startBareRelay(t, testnet.RefusingAddr(t, "127.0.0.2"))
	for _, front := range []Front{FrontCONNECT, FrontSOCKS5} {
		_, err := route{front: front, proxy: relay}.dial(ctx, target)
		assert.ErrorIs(t, err, ErrHandshake, front.String())
		_, err = route{front: front, proxy: orphan}.dial(ctx, o.echo.Addr().String())
		assert.ErrorIs(t, err, ErrHandshake, "%s: a live target through a dead upstream", front)
	}

	c, err := net.Dial("tcp", relay)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	rest, err := io.ReadAll(c)
	assert.NoError(t, err)
	assert.Empty(t, rest, "a plain GET is closed without an answer")
}

// FuzzBareSOCKS5Request: the bare relay's SOCKS5 reader never panics, and
// what it accepts is a host:port.
func FuzzBareSOCKS5Request(f *testing.F) {
	f.Add([]byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80})
	f.Add([]byte{5, 1, 0, 5, 1, 0, 3, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 1, 187})
	f.Add([]byte{5, 1, 0, 5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22})
	f.Add([]byte{5, 1, 0, 5, 2, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		target, err := socks5Request(bufio.NewReader(bytes.NewReader(data)), io.Discard)
		if err != nil {
			return
		}
		_, _, err = net.SplitHostPort(target)
		assert.NoError(t, err, "accepted %q", target)
	})
}
