package socks

import (
	"io"
	"net"
	"testing"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// BenchmarkSOCKS5NewTunnels measures whole short tunnels: connect, SOCKS5
// handshake (greeting, CONNECT, reply), a 16-byte echo and close, beside the
// same echo on a direct connection. "serial" runs one tunnel after another
// (bound by round trips: SOCKS5 adds two, plus the second hop); "parallel"
// keeps 8 clients busy (bound by CPU, the figure DESIGN.md's targets mean).
func BenchmarkSOCKS5NewTunnels(b *testing.B) {
	echo := startEcho(b, "127.0.0.1")
	p := startProxy(b, Config{Dialer: &dial.Direct{}, Logger: zap.NewNop()})
	req := request5(b, 0x01, echo)

	direct := func(b *testing.B) { oneTunnel(b, echo, nil) }
	socks5 := func(b *testing.B) { oneTunnel(b, p.addr, req) }
	for _, mode := range []string{"serial", "parallel"} {
		for _, tc := range []struct {
			name string
			run  func(b *testing.B)
		}{{"direct", direct}, {"socks5", socks5}} {
			b.Run(mode+"/"+tc.name, func(b *testing.B) {
				b.ReportAllocs()
				if mode == "serial" {
					for b.Loop() {
						tc.run(b)
					}
				} else {
					b.SetParallelism(4) // 4 × GOMAXPROCS clients
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							tc.run(b)
						}
					})
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tunnels/s")
			})
		}
	}
}

// oneTunnel connects to addr, runs a no-auth SOCKS5 CONNECT with req unless
// req is nil, echoes 16 bytes and closes.
func oneTunnel(b *testing.B, addr string, req []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var buf [16]byte
	if req != nil {
		if _, err := c.Write([]byte{0x05, 0x01, 0x00}); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:2]); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:10]); err != nil || buf[1] != 0x00 { // IPv4 BND.ADDR
			b.Fatalf("reply %x: %v", buf[:10], err)
		}
	}
	msg := []byte("0123456789abcdef")
	if _, err := c.Write(msg); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf[:]); err != nil || string(buf[:]) != string(msg) {
		b.Fatalf("echo %q: %v", buf, err)
	}
}
