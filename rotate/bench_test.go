package rotate

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/relay"
)

// bulkOrigin streams bytes to every connection once the client sends one
// byte, until the client goes away.
func startBulkOrigin(b *testing.B) string {
	return testnet.Serve(b, testnet.Listen(b, ""), func(c net.Conn) {
		var one [1]byte
		if _, err := c.Read(one[:]); err != nil {
			return
		}
		buf := make([]byte, 256<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}).Addr()
}

// startFront is a stand-in for hopper's front end: it accepts one client,
// dials the target through the pool and relays.
func startFront(b *testing.B, p *Pool, target string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	done := make(chan struct{})
	var mu sync.Mutex
	var client net.Conn
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		client = c
		mu.Unlock()
		defer c.Close()
		out, err := p.Dial(context.Background(), &dial.Request{Target: target})
		if err != nil {
			return
		}
		defer out.Done(false)
		_, _ = relay.Pipe(c, out.Conn, 0)
	}()
	b.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		if client != nil {
			_ = client.Close()
		}
		mu.Unlock()
		<-done
	})
	return ln.Addr().String()
}

// connectVia asks the HTTP proxy at proxyAddr for a tunnel to target.
func connectVia(b *testing.B, proxyAddr, target string) net.Conn {
	c, err := net.Dial("tcp", proxyAddr)
	require.NoError(b, err)
	_, err = io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
	require.NoError(b, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	require.NoError(b, err)
	require.Equal(b, http.StatusOK, resp.StatusCode)
	require.Zero(b, br.Buffered())
	return c
}

// BenchmarkChained measures one bulk download (origin → client) through an
// HTTP CONNECT upstream: directly from the origin, through the upstream
// alone, and through a pool-dialed connection relayed by a front end, as
// hopper chains. Compare the MB/s figures.
func BenchmarkChained(b *testing.B) {
	origin := startBulkOrigin(b)
	up := startHTTPProxy(b, "127.0.0.101", proxyOpts{})
	const chunk = 128 << 10
	run := func(b *testing.B, c net.Conn) {
		defer c.Close()
		buf := make([]byte, chunk)
		_, err := c.Write([]byte{'g'})
		require.NoError(b, err)
		b.SetBytes(chunk)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
	}
	b.Run("direct", func(b *testing.B) {
		c, err := net.Dial("tcp", origin)
		require.NoError(b, err)
		run(b, c)
	})
	b.Run("upstream", func(b *testing.B) {
		run(b, connectVia(b, up.addr, origin))
	})
	b.Run("pool", func(b *testing.B) {
		p, err := New(Config{}, mustUpstreams(b, "http://"+up.addr))
		require.NoError(b, err)
		front := startFront(b, p, origin)
		c, err := net.Dial("tcp", front)
		require.NoError(b, err)
		run(b, c)
	})
}
