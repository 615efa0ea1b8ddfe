package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every wait in these tests.
const testTimeout = 20 * time.Second

type pipeResult struct {
	res Result
	err error
}

// relayed is a running Pipe between the inner ends of two connection pairs:
// client talks to server through it.
type relayed struct {
	client, server net.Conn
	in, out        net.Conn // the relay's ends
	done           chan pipeResult
}

// startPipe relays in↔out in a goroutine; client and server are the outer
// ends of the pairs.
func startPipe(t testing.TB, client, in, out, server net.Conn, idle time.Duration) *relayed {
	t.Helper()
	r := &relayed{client: client, server: server, in: in, out: out, done: make(chan pipeResult, 1)}
	go func() {
		res, err := Pipe(in, out, idle)
		r.done <- pipeResult{res, err}
	}()
	t.Cleanup(func() {
		// Unblock a Pipe a failed test left running, so goleak sees none.
		_ = in.Close()
		_ = out.Close()
		select {
		case <-r.done:
		case <-time.After(testTimeout):
		}
	})
	return r
}

// startAsync is startPipe through Start: done hands the result over. It
// fails the test if done runs more than once.
func startAsync(t testing.TB, client, in, out, server net.Conn, idle time.Duration) *relayed {
	t.Helper()
	r := &relayed{client: client, server: server, in: in, out: out, done: make(chan pipeResult, 1)}
	var calls atomic.Int32
	Start(in, out, idle, func(res Result, err error) {
		if calls.Add(1) > 1 {
			t.Error("Start called done twice")
			return
		}
		r.done <- pipeResult{res, err}
	})
	t.Cleanup(func() {
		_ = in.Close()
		_ = out.Close()
		select {
		case res := <-r.done:
			r.done <- res
		case <-time.After(testTimeout):
		}
	})
	return r
}

// startTCP relays between two loopback TCP pairs.
func startTCP(t testing.TB, idle time.Duration) *relayed {
	t.Helper()
	client, in := testnet.TCPPair(t)
	out, server := testnet.TCPPair(t)
	return startPipe(t, client, in, out, server, idle)
}

// wait returns Pipe's result, failing the test if it does not come.
func (r *relayed) wait(t testing.TB) pipeResult {
	t.Helper()
	select {
	case res := <-r.done:
		r.done <- res // later waits (and the cleanup) see it too
		return res
	case <-time.After(testTimeout):
		t.Fatal("relay.Pipe did not return")
		return pipeResult{}
	}
}

// close closes all four conns.
func (r *relayed) close() {
	for _, c := range []net.Conn{r.client, r.in, r.out, r.server} {
		_ = c.Close()
	}
}

// running reports whether Pipe has not returned yet.
func (r *relayed) running() bool {
	select {
	case res := <-r.done:
		r.done <- res
		return false
	default:
		return true
	}
}

// stream is what one side sent and what the other received.
type stream struct {
	sentSum, gotSum [sha256.Size]byte
	sent, got       int64
	err             error
}

// transfer writes size pseudo-random bytes to w, then half-closes it, while
// reading r to EOF, and returns both digests.
func transfer(w, r net.Conn, size int64, seed byte) *stream {
	return transferEOF(w, r, size, seed, true)
}

// transferEOF is transfer, or without eof a transfer that reads exactly
// size bytes and leaves both conns open (for conns without half-close).
func transferEOF(w, r net.Conn, size int64, seed byte, eof bool) *stream {
	var s stream
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h := sha256.New()
		buf := make([]byte, 64<<10)
		for i := range buf {
			buf[i] = byte(i*7) ^ seed
		}
		for s.sent < size {
			chunk := buf[:min(int64(len(buf)), size-s.sent)]
			n, err := w.Write(chunk)
			h.Write(chunk[:n])
			s.sent += int64(n)
			if err != nil {
				s.err = err
				break
			}
			buf[0]++ // vary the content from chunk to chunk
		}
		h.Sum(s.sentSum[:0])
		if eof {
			closeWrite(w)
		}
	}()
	h := sha256.New()
	var n int64
	var err error
	if eof {
		n, err = io.Copy(h, r)
	} else {
		n, err = io.CopyN(h, r, size)
	}
	s.got = n
	if err != nil && s.err == nil {
		s.err = err
	}
	h.Sum(s.gotSum[:0])
	wg.Wait()
	return &s
}

// bulkBothWays sends size bytes each way through r at once, checks that
// each arrived whole and in order, and that the relay reports them.
func bulkBothWays(t *testing.T, r *relayed, size int64) {
	t.Helper()
	upc := make(chan *stream, 1)
	go func() { upc <- transfer(r.client, r.server, size, 1) }()
	down := transfer(r.server, r.client, size, 2)
	up := <-upc
	for name, s := range map[string]*stream{"up": up, "down": down} {
		require.NoError(t, s.err, name)
		assert.Equal(t, size, s.sent, name)
		assert.Equal(t, size, s.got, name)
		assert.Equal(t, s.sentSum, s.gotSum, name+" sha256")
	}
	res := r.wait(t)
	require.NoError(t, res.err)
	assert.Equal(t, Result{Up: size, Down: size}, res.res)
}

// writeToConn is a TCP conn with bytes read ahead, relayed through its own
// WriteTo, as a handshake that read past its reply hands a conn over.
type writeToConn struct {
	*net.TCPConn
	pending []byte
}

func (c *writeToConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.TCPConn.Read(p)
}

func (c *writeToConn) WriteTo(w io.Writer) (int64, error) {
	var n int64
	if len(c.pending) > 0 {
		m, err := w.Write(c.pending)
		n += int64(m)
		c.pending = c.pending[m:]
		if err != nil {
			return n, err
		}
	}
	m, err := io.Copy(w, c.TCPConn)
	return n + m, err
}

// selfSigned makes a throwaway certificate for 127.0.0.1.
func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
