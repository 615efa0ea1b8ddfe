//go:build linux

package relay

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// openFiles counts this process's descriptors: all of them, and the pipes.
func openFiles(t testing.TB) (all, pipes int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the descriptor ReadDir itself used, now closed
		}
		all++
		if strings.HasPrefix(target, "pipe:") {
			pipes++
		}
	}
	return all, pipes
}

func TestIdlePipeHoldsOnlyItsSockets(t *testing.T) {
	const tunnels = 50
	settledPipes(t) // earlier tests' pooled pipes would close midway
	allBefore, pipesBefore := openFiles(t)
	for range tunnels {
		r := startTCP(t, time.Minute)
		// A round trip each way, so both directions have moved data and
		// gone back to waiting.
		for _, ends := range [][2]interface {
			io.Reader
			io.Writer
		}{{r.client, r.server}, {r.server, r.client}} {
			_, err := ends[0].Write([]byte("hello"))
			require.NoError(t, err)
			_, err = io.ReadFull(ends[1], make([]byte, 5))
			require.NoError(t, err)
		}
	}
	time.Sleep(20 * time.Millisecond) // let the relays park
	all, pipes := openFiles(t)
	// Each tunnel is two loopback pairs: four sockets, two of them the
	// relay's. No pipe is held by a waiting direction.
	assert.Equal(t, pipesBefore, pipes, "idle relays hold pipes")
	assert.Equal(t, 4*tunnels, all-allBefore, "descriptors per idle tunnel beyond its sockets")
}

func TestBulkPipeReturnsItsPipe(t *testing.T) {
	// Bulk transfers splice through pooled pipes and give them back when
	// the socket is drained: once the pool lets go of its pipes (at
	// garbage collection), the waiting tunnels hold none.
	pipesBefore := settledPipes(t)
	for i := range 4 {
		r := startTCP(t, time.Minute)
		s := transferEOF(r.client, r.server, 8<<20, byte(i), false)
		require.NoError(t, s.err)
		assert.Equal(t, s.sentSum, s.gotSum)
		assert.True(t, r.running())
	}
	assert.Equal(t, pipesBefore, settledPipes(t), "drained tunnels keep pipes")
}

// settledPipes counts the pipes open once garbage collection has emptied
// the pipe pool and the cleanups have closed what it held: the count has
// stayed the same over a few collections.
func settledPipes(t testing.TB) int {
	t.Helper()
	_, last := openFiles(t)
	for i, stable := 0, 0; stable < 3 && i < 500; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		_, pipes := openFiles(t)
		if pipes == last {
			stable++
		} else {
			stable = 0
		}
		last = pipes
	}
	return last
}

// BenchmarkIdleTunnels holds relays open idle and reports what each costs
// this process: Go memory (heap and stacks, both ends' sockets included)
// and descriptors beyond the relay's own two sockets.
func BenchmarkIdleTunnels(b *testing.B) {
	const tunnels = 500
	for range b.N {
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		fdsBefore, _ := openFiles(b)
		b.StartTimer()
		rs := make([]*relayed, tunnels)
		for i := range rs {
			rs[i] = startTCP(b, time.Minute)
			if _, err := rs[i].client.Write([]byte("x")); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(rs[i].server, make([]byte, 1)); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		time.Sleep(20 * time.Millisecond)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		fds, _ := openFiles(b)
		used := func(m *runtime.MemStats) float64 { return float64(m.HeapInuse + m.StackInuse) }
		b.ReportMetric((used(&after)-used(&before))/tunnels, "B/tunnel")
		b.ReportMetric(float64(fds-fdsBefore)/tunnels-4, "extra-fds/tunnel")
		for _, r := range rs {
			closeWrite(r.client)
			closeWrite(r.server)
			r.wait(b)
			r.close()
		}
		b.StartTimer()
	}
}

// rcvLowat reads c's SO_RCVLOWAT.
func rcvLowat(t testing.TB, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	var v int
	var gerr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT)
	}))
	require.NoError(t, gerr)
	return v
}

func TestLowatDroppedAfterBurstIntoFullDestination(t *testing.T) {
	// A burst that waits for a full destination may raise the source's
	// receive low-water mark (when it splices; a busy machine can leave it
	// on the read path), and must drop it before it waits on the source
	// again: a one-byte message after the bulk still comes through, and the
	// mark is back to 1. That the mark is raised at all is an optimization
	// the relay benchmarks show (thread switches, CPU per GiB).
	r := startTCP(t, time.Minute)
	// Far more than the destination's socket buffers can take (loopback
	// autotuning grows them to several MiB), so the pump must wait on it.
	const size = 64 << 20
	sent := make(chan error, 1)
	go func() {
		_, err := r.client.Write(make([]byte, size))
		sent <- err
	}()
	// The server reads nothing yet, so the relay's pump waits on it; give
	// it the time to get there (and, when splicing, raise the mark).
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && rcvLowat(t, r.in) == 1; {
		time.Sleep(time.Millisecond)
	}
	_, err := io.ReadFull(r.server, make([]byte, size))
	require.NoError(t, err)
	require.NoError(t, <-sent)

	_, err = r.client.Write([]byte{7})
	require.NoError(t, err)
	require.NoError(t, r.server.SetReadDeadline(time.Now().Add(testTimeout)))
	var b [1]byte
	_, err = io.ReadFull(r.server, b[:])
	require.NoError(t, err, "a short message after the burst")
	assert.Equal(t, byte(7), b[0])
	require.Eventually(t, func() bool { return rcvLowat(t, r.in) == 1 }, testTimeout, time.Millisecond,
		"the mark once the relay waits on the source again")
	assert.True(t, r.running())
}
