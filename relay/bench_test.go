package relay

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

// Benchmarks print the relay beside a direct loopback connection from the
// same run:
//
//	go test -run '^$' -bench . -benchtime 2s ./relay/

// BenchmarkPipeBulk is one-way throughput, 256 KiB per op.
func BenchmarkPipeBulk(b *testing.B) {
	const chunk = 256 << 10
	run := func(b *testing.B, w, r net.Conn) {
		b.SetBytes(chunk)
		b.ReportAllocs()
		done := make(chan error, 1)
		go func() {
			_, err := io.CopyN(io.Discard, r, int64(b.N)*chunk)
			done <- err
		}()
		buf := make([]byte, chunk)
		b.ResetTimer()
		for range b.N {
			if _, err := w.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.Run("direct", func(b *testing.B) {
		client, server := testnet.TCPPair(b)
		run(b, client, server)
	})
	b.Run("relay", func(b *testing.B) {
		r := startTCP(b, time.Minute)
		run(b, r.client, r.server)
		closeWrite(r.client)
		closeWrite(r.server)
		r.wait(b)
	})
}

// BenchmarkPipeRoundTrip alternates a 64-byte echo round trip over a direct
// connection and over the relay, and reports both and the difference.
func BenchmarkPipeRoundTrip(b *testing.B) {
	echo := func(c net.Conn) {
		defer closeWrite(c)
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
	directClient, directServer := testnet.TCPPair(b)
	go echo(directServer)
	r := startTCP(b, time.Minute)
	go echo(r.server)
	msg := make([]byte, 64)
	roundTrip := func(c net.Conn) time.Duration {
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var direct, relayed time.Duration
	for range b.N {
		direct += roundTrip(directClient)
		relayed += roundTrip(r.client)
	}
	b.StopTimer()
	us := func(d time.Duration) float64 { return float64(d) / float64(b.N) / float64(time.Microsecond) }
	b.ReportMetric(us(direct), "direct-µs/rtt")
	b.ReportMetric(us(relayed), "relay-µs/rtt")
	b.ReportMetric(us(relayed-direct), "added-µs/rtt")
	_ = directClient.Close()
	closeWrite(r.client)
	r.wait(b)
}
