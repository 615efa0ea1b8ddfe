package tunnel

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
)

// Benchmarks print figures beside a direct baseline from the same run; they
// assert nothing. Compare direct/N with hopper/N.

// benchProxy runs a Server for a benchmark, logging nothing.
func benchProxy(b *testing.B, d dial.Dialer) string {
	b.Helper()
	return serve(b, newServer(b, Config{Dialer: d, Logger: zap.NewNop()}))
}

// benchServer is a loopback TCP server for benchmarks.
func benchServer(b *testing.B, handle func(net.Conn)) string {
	b.Helper()
	return testnet.Serve(b, testnet.Listen(b, ""), handle).Addr()
}

// dialVia opens a connection to target, through the proxy at via unless it
// is empty.
func dialVia(via, target string) (net.Conn, error) {
	if via == "" {
		return net.Dial("tcp", target)
	}
	c, err := net.Dial("tcp", via)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\n\r\n", target); err != nil {
		c.Close()
		return nil, err
	}
	// "HTTP/1.1 200 Connection established\r\n\r\n"
	reply := make([]byte, len(connectEstablished))
	if _, err := io.ReadFull(c, reply); err != nil || string(reply) != connectEstablished {
		c.Close()
		return nil, fmt.Errorf("CONNECT: %q %v", reply, err)
	}
	return c, nil
}

// BenchmarkThroughput measures bulk download over 1 and 8 tunnels at once,
// straight from the source and through hopper's CONNECT.
func BenchmarkThroughput(b *testing.B) {
	for _, n := range []int{1, 8} {
		for _, mode := range []string{"direct", "hopper"} {
			b.Run(fmt.Sprintf("%s/%d", mode, n), func(b *testing.B) {
				benchThroughput(b, n, mode == "hopper")
			})
		}
	}
}

func benchThroughput(b *testing.B, tunnels int, viaHopper bool) {
	const chunk = 1 << 20
	block := make([]byte, 256<<10)
	source := benchServer(b, func(c net.Conn) {
		for {
			if _, err := c.Write(block); err != nil {
				return
			}
		}
	})
	via := ""
	if viaHopper {
		via = benchProxy(b, &dial.Direct{})
	}
	conns := make([]net.Conn, tunnels)
	for i := range conns {
		c, err := dialVia(via, source)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	b.SetBytes(chunk)
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, c := range conns {
		// Tunnel i moves its share of b.N chunks.
		share := int64(b.N/tunnels) * chunk
		if i < b.N%tunnels {
			share += chunk
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for share > 0 {
				n, err := c.Read(buf[:min(int64(len(buf)), share)])
				if err != nil {
					b.Error(err)
					return
				}
				share -= int64(n)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
}

// BenchmarkNewTunnels measures short connections: connect (plus the CONNECT
// handshake through hopper), a 16-byte echo, close.
func BenchmarkNewTunnels(b *testing.B) {
	for _, mode := range []string{"direct", "hopper"} {
		b.Run(mode, func(b *testing.B) {
			target := benchServer(b, testnet.Echo)
			via := ""
			if mode == "hopper" {
				via = benchProxy(b, &dial.Direct{})
			}
			msg := []byte("0123456789abcdef")
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				got := make([]byte, len(msg))
				for pb.Next() {
					c, err := dialVia(via, target)
					if err != nil {
						b.Error(err)
						return
					}
					_, err = c.Write(msg)
					if err == nil {
						_, err = io.ReadFull(c, got)
					}
					c.Close()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tunnels/s")
		})
	}
}

// BenchmarkForward measures small GET requests over kept-alive connections,
// straight to the origin and through hopper's forward path.
func BenchmarkForward(b *testing.B) {
	for _, mode := range []string{"direct", "hopper"} {
		b.Run(mode, func(b *testing.B) {
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "hello, world\n")
			}))
			defer origin.Close()
			tr := &http.Transport{MaxIdleConnsPerHost: 16}
			defer tr.CloseIdleConnections()
			if mode == "hopper" {
				idle := &dial.IdlePool{MaxPerKey: 16}
				defer idle.Close()
				tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: benchProxy(b, &dial.Direct{Idle: idle})})
			}
			client := &http.Client{Transport: tr}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(origin.URL + "/")
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
		})
	}
}

// BenchmarkForwardRaw is BenchmarkForward with raw sockets at both ends: 8
// kept-alive clients send the same GET for a 1 KiB body, an origin answers
// it, and neither allocates, so allocs/op and B/op are hopper's alone.
func BenchmarkForwardRaw(b *testing.B) {
	const conns = 8
	body := pattern(1 << 10)
	reply := append([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n"), body...)
	origin := benchServer(b, func(c net.Conn) {
		buf := make([]byte, 4<<10)
		n := 0
		for {
			k, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += k
			if end := headEnd(buf[:n], 0); end >= 0 {
				n = copy(buf, buf[end:n])
				if _, err := c.Write(reply); err != nil {
					return
				}
			}
		}
	})
	for _, mode := range []string{"direct", "hopper"} {
		b.Run(mode, func(b *testing.B) {
			addr, target := origin, "/1k"
			if mode == "hopper" {
				idle := &dial.IdlePool{MaxPerKey: conns}
				defer idle.Close()
				addr, target = benchProxy(b, &dial.Direct{Idle: idle}), "http://"+origin+"/1k"
			}
			request := []byte("GET " + target + " HTTP/1.1\r\nHost: " + origin + "\r\nUser-Agent: bench\r\n\r\n")
			clients := make([]net.Conn, conns)
			for i := range clients {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				clients[i] = c
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism((conns + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				c := clients[next.Add(1)-1]
				buf := make([]byte, 4<<10)
				for pb.Next() {
					if err := rawGet(c, request, buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
		})
	}
}

// rawGet sends request on c and reads one response whose head ends with its
// Content-Length field, as both ends of BenchmarkForwardRaw send it.
func rawGet(c net.Conn, request, buf []byte) error {
	if _, err := c.Write(request); err != nil {
		return err
	}
	n, want := 0, -1
	for want < 0 || n < want {
		k, err := c.Read(buf[n:])
		if err != nil {
			return err
		}
		n += k
		if want < 0 {
			end := headEnd(buf[:n], 0)
			if end < 0 {
				continue
			}
			h := buf[:end-4]
			i := bytes.LastIndexByte(h, ' ')
			cl, ok := parseLength(h[i+1:])
			if !ok {
				return fmt.Errorf("unexpected response head %q", h)
			}
			want = end + int(cl)
		}
	}
	if n != want {
		return fmt.Errorf("%d bytes past the response", n-want)
	}
	return nil
}

// BenchmarkIdleTunnelMemory reports the heap and stack held per open, idle
// CONNECT tunnel. The client and origin ends live in this process without
// goroutines of their own, so the figure is hopper's share plus four socket
// objects. The measurement is made once per run, whatever b.N.
func BenchmarkIdleTunnelMemory(b *testing.B) {
	const tunnels = 1000
	via := benchProxy(b, &dial.Direct{})
	origin := holdConns(b) // its ends close first, then the proxy shuts down

	measure := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapInuse + ms.StackInuse)
	}
	conns := make([]net.Conn, 0, tunnels)
	before := measure()
	for j := 0; j < tunnels; j++ {
		c, err := dialVia(via, origin)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	after := measure()
	for range b.N {
	}
	b.ReportMetric(float64(after-before)/tunnels, "B/tunnel")

	for _, c := range conns {
		c.Close()
	}
}
