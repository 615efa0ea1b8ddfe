package socks

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hopper-proxy/hopper/dial"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every blocking step of a test.
const testTimeout = 10 * time.Second

// testProxy is a tiny listener standing in for tunnel: it reads one byte under a
// header deadline and hands the connection to ServeStream, then closes it
// when the stream is done.
type testProxy struct {
	addr   string
	logs   *observer.ObservedLogs
	served chan struct{} // one value per stream that ended
}

// startProxy serves cfg on 127.0.0.1:0 until the test ends. A nil cfg.Logger
// logs to the test and to p.logs.
func startProxy(tb testing.TB, cfg Config) *testProxy {
	tb.Helper()
	return startProxyWith(tb, cfg, nil)
}

// startProxyWith is startProxy with every accepted connection passed
// through wrap (when set) before its first byte is read, as tunnel's TLS
// termination does; a nil result drops the connection.
func startProxyWith(tb testing.TB, cfg Config, wrap func(net.Conn) net.Conn) *testProxy {
	tb.Helper()
	p := &testProxy{served: make(chan struct{}, 1024)}
	if cfg.Logger == nil {
		core, logs := observer.New(zapcore.InfoLevel)
		p.logs = logs
		cfg.Logger = zap.New(zapcore.NewTee(core, zaptest.NewLogger(tb).Core()))
	}
	srv, err := New(cfg)
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	p.addr = testnet.Serve(tb, testnet.Listen(tb, ""), func(c net.Conn) {
		if wrap != nil {
			if c = wrap(c); c == nil {
				return
			}
		}
		p.serveOne(ctx, srv, c)
	}).Addr()
	tb.Cleanup(cancel) // before the Server closes what is left: streams see it first
	return p
}

func (p *testProxy) serveOne(ctx context.Context, srv *Server, c net.Conn) {
	ended := make(chan struct{})
	defer func() {
		<-ended
		_ = c.Close()
		select { // benchmarks serve more streams than anyone counts
		case p.served <- struct{}{}:
		default:
		}
	}()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		close(ended)
		return
	}
	srv.ServeStream(ctx, c, b[0], func() { close(ended) })
}

// serveStream runs ServeStream and waits until the stream is done, as a
// listener's goroutine would have before tunnels were relayed on their own.
func serveStream(ctx context.Context, srv *Server, c net.Conn, first byte) {
	ended := make(chan struct{})
	srv.ServeStream(ctx, c, first, func() { close(ended) })
	<-ended
}

// tunnelLogs waits until n streams were served and returns their access-log
// lines.
func (p *testProxy) tunnelLogs(t *testing.T, n int) []observer.LoggedEntry {
	t.Helper()
	for range n {
		select {
		case <-p.served:
		case <-time.After(testTimeout):
			t.Fatal("stream not served in time")
		}
	}
	return p.logs.FilterMessage("tunnel").AllUntimed()
}

// failing is a Dialer that always fails with err, wrapped as a dial.Error.
func failing(err error) dial.Dialer {
	return dial.DialerFunc(func(_ context.Context, req *dial.Request) (*dial.Outbound, error) {
		return nil, &dial.Error{Upstream: "test", Target: req.Target, Attempt: 1, Err: err}
	})
}

// startEcho runs an echo server (testnet.Echo) on ip:0 and returns its
// address.
func startEcho(tb testing.TB, ip string) string {
	tb.Helper()
	return startOrigin(tb, ip, testnet.Echo)
}

// startOrigin runs handle for every connection to a listener on ip:0, each
// under the test's deadline, and returns its address.
func startOrigin(tb testing.TB, ip string, handle func(c net.Conn)) string {
	tb.Helper()
	return testnet.Serve(tb, testnet.Listen(tb, ip), func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		handle(c)
	}).Addr()
}

// addr5 encodes target as SOCKS5 ATYP, address and port.
func addr5(tb testing.TB, target string) []byte {
	tb.Helper()
	host, portStr, err := net.SplitHostPort(target)
	require.NoError(tb, err)
	port, err := strconv.Atoi(portStr)
	require.NoError(tb, err)
	var b []byte
	ip := net.ParseIP(host)
	switch {
	case ip.To4() != nil:
		b = append([]byte{0x01}, ip.To4()...)
	case ip != nil:
		b = append([]byte{0x04}, ip.To16()...)
	default:
		b = append([]byte{0x03, byte(len(host))}, host...)
	}
	return binary.BigEndian.AppendUint16(b, uint16(port))
}

// request5 encodes a SOCKS5 request.
func request5(tb testing.TB, cmd byte, target string) []byte {
	return append([]byte{0x05, cmd, 0x00}, addr5(tb, target)...)
}

// greet sends a SOCKS5 greeting and returns the selected method.
func greet(tb testing.TB, c net.Conn, methods ...byte) byte {
	tb.Helper()
	return answer2(tb, c, append([]byte{0x05, byte(len(methods))}, methods...), 0x05)
}

// userPass runs RFC 1929 and returns the status.
func userPass(tb testing.TB, c net.Conn, user, pass string) byte {
	tb.Helper()
	b := append([]byte{0x01, byte(len(user))}, user...)
	return answer2(tb, c, append(append(b, byte(len(pass))), pass...), 0x01)
}

// answer2 writes msg to c and reads the two-byte answer, whose first byte
// must be ver (5 for a greeting, 1 for RFC 1929); it returns the second.
func answer2(tb testing.TB, c net.Conn, msg []byte, ver byte) byte {
	tb.Helper()
	_, err := c.Write(msg)
	require.NoError(tb, err)
	var r [2]byte
	_, err = io.ReadFull(c, r[:])
	require.NoError(tb, err)
	require.Equal(tb, ver, r[0])
	return r[1]
}

// readReply5 reads a SOCKS5 reply and returns its code.
func readReply5(tb testing.TB, r io.Reader) byte {
	tb.Helper()
	var hdr [4]byte
	_, err := io.ReadFull(r, hdr[:])
	require.NoError(tb, err)
	require.Equal(tb, byte(0x05), hdr[0])
	var rest int
	switch hdr[3] {
	case 0x01:
		rest = 4 + 2
	case 0x04:
		rest = 16 + 2
	default:
		tb.Fatalf("unexpected reply address type %#x", hdr[3])
	}
	_, err = io.ReadFull(r, make([]byte, rest))
	require.NoError(tb, err)
	return hdr[1]
}

// connect5 greets without auth, sends CONNECT to target and returns the reply code.
func connect5(tb testing.TB, c net.Conn, target string) byte {
	tb.Helper()
	require.Equal(tb, byte(0x00), greet(tb, c, 0x00))
	_, err := c.Write(request5(tb, 0x01, target))
	require.NoError(tb, err)
	return readReply5(tb, c)
}

// connect5Rest is connect5 on a stream whose version byte the listener
// already read: the rest of a no-auth greeting, then CONNECT to target.
func connect5Rest(tb testing.TB, c net.Conn, target string) byte {
	tb.Helper()
	require.Equal(tb, byte(0x00), answer2(tb, c, []byte{0x01, 0x00}, 0x05), "no authentication selected")
	_, err := c.Write(request5(tb, 0x01, target))
	require.NoError(tb, err)
	return readReply5(tb, c)
}

// encodeRequest4 encodes a SOCKS4 request; a host name makes it SOCKS4a.
func encodeRequest4(tb testing.TB, cmd byte, target, userID string) []byte {
	tb.Helper()
	host, portStr, err := net.SplitHostPort(target)
	require.NoError(tb, err)
	port, err := strconv.Atoi(portStr)
	require.NoError(tb, err)
	b := binary.BigEndian.AppendUint16([]byte{0x04, cmd}, uint16(port))
	ip := net.ParseIP(host).To4()
	if ip == nil {
		ip = net.IPv4(0, 0, 0, 1).To4()
	}
	b = append(append(b, ip...), userID...)
	b = append(b, 0)
	if net.ParseIP(host) == nil {
		b = append(append(b, host...), 0)
	}
	return b
}

// readReply4 reads a SOCKS4 reply and returns its code.
func readReply4(tb testing.TB, r io.Reader) byte {
	tb.Helper()
	var b [8]byte
	_, err := io.ReadFull(r, b[:])
	require.NoError(tb, err)
	require.Equal(tb, byte(0x00), b[0])
	return b[1]
}

// field returns the access-log field key of e.
func field(e observer.LoggedEntry, key string) any {
	return e.ContextMap()[key]
}
