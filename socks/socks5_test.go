package socks

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/net/proxy"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/internal/testnet/dialtest"
)

// aliceAuth accepts account "alice" with password "secret" as "acct-alice".
var aliceAuth = dial.AuthenticatorFunc(func(_ context.Context, _ net.Addr, user, pass string) (string, error) {
	if user == "alice" && pass == "secret" {
		return "acct-alice", nil
	}
	return "", fmt.Errorf("user %q: %w", user, dial.ErrAuth)
})

func TestSOCKS5XNetClient(t *testing.T) {
	echo := startEcho(t, "127.0.0.1")
	cases := []struct {
		name string
		auth dial.Authenticator
		cred *proxy.Auth
		want dial.Request
	}{
		{name: "no auth", want: dial.Request{}},
		{
			name: "user/pass with auth off",
			cred: &proxy.Auth{User: "bob-session-42-country-US", Password: "anything"},
			want: dial.Request{User: "bob", Session: "42", Country: "us"},
		},
		{
			name: "user/pass with auth on",
			auth: aliceAuth,
			cred: &proxy.Auth{User: "alice-session-a-b-country-de", Password: "secret"},
			want: dial.Request{User: "acct-alice", Session: "a-b", Country: "de"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &dialtest.Recorder{Next: &dial.Direct{}}
			p := startProxy(t, Config{Dialer: rec, Auth: tc.auth})
			d, err := proxy.SOCKS5("tcp", p.addr, tc.cred, proxy.Direct)
			require.NoError(t, err)
			c, err := d.(proxy.ContextDialer).DialContext(context.Background(), "tcp", echo)
			require.NoError(t, err)
			require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
			testnet.EchoRoundTrip(t, c, "hello through socks5")
			require.NoError(t, c.Close())

			logs := p.tunnelLogs(t, 1)
			reqs := rec.Requests()
			require.Len(t, reqs, 1)
			got := reqs[0]
			assert.Equal(t, echo, got.Target)
			assert.Equal(t, dial.ProtocolSOCKS5, got.Protocol)
			assert.Equal(t, tc.want.User, got.User)
			assert.Equal(t, tc.want.Session, got.Session)
			assert.Equal(t, tc.want.Country, got.Country)
			require.NotNil(t, got.Client)
			assert.Equal(t, c.LocalAddr().String(), got.Client.String())

			require.Len(t, logs, 1)
			assert.Equal(t, "ok", field(logs[0], "result"))
			assert.Equal(t, "socks5", field(logs[0], "proto"))
			assert.Equal(t, echo, field(logs[0], "target"))
			assert.Equal(t, "direct", field(logs[0], "upstream"))
			assert.Equal(t, int64(1), field(logs[0], "attempts"))
			assert.Equal(t, tc.want.User, field(logs[0], "user"))
			assert.Equal(t, int64(len("hello through socks5")), field(logs[0], "up"))
			assert.Equal(t, int64(len("hello through socks5")), field(logs[0], "down"))
		})
	}
}

// A client offering both methods gets username/password even with auth off,
// so that its session controls arrive.
func TestSOCKS5SelectsUserPassWhenOffered(t *testing.T) {
	rec := &dialtest.Recorder{Next: &dial.Direct{}}
	p := startProxy(t, Config{Dialer: rec})
	echo := startEcho(t, "127.0.0.1")
	c := testnet.Dial(t, p.addr)
	require.Equal(t, byte(0x02), greet(t, c, 0x00, 0x02))
	require.Equal(t, byte(0x00), userPass(t, c, "carol-country-fr", "x"))
	_, err := c.Write(request5(t, 0x01, echo))
	require.NoError(t, err)
	require.Equal(t, byte(0x00), readReply5(t, c))
	testnet.EchoRoundTrip(t, c, "ping")
	require.NoError(t, c.Close())
	p.tunnelLogs(t, 1)
	reqs := rec.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "carol", reqs[0].User)
	assert.Equal(t, "fr", reqs[0].Country)
}

func TestSOCKS5WrongCredentials(t *testing.T) {
	rec := &dialtest.Recorder{Next: &dial.Direct{}}
	p := startProxy(t, Config{Dialer: rec, Auth: aliceAuth})
	c := testnet.Dial(t, p.addr)
	require.Equal(t, byte(0x02), greet(t, c, 0x00, 0x02))
	require.Equal(t, byte(0x01), userPass(t, c, "alice-session-1", "hunter2"))
	testnet.RequireClosed(t, c)

	logs := p.tunnelLogs(t, 1)
	require.Len(t, logs, 1)
	assert.Equal(t, "auth-failed", field(logs[0], "result"))
	assert.Equal(t, "alice", field(logs[0], "user"))
	for k, v := range logs[0].ContextMap() {
		assert.NotContains(t, fmt.Sprint(v), "hunter2", "field %s leaks the password", k)
	}
	assert.Empty(t, rec.Requests())
}

func TestSOCKS5AuthRequired(t *testing.T) {
	rec := &dialtest.Recorder{Next: &dial.Direct{}}
	p := startProxy(t, Config{Dialer: rec, Auth: aliceAuth})
	c := testnet.Dial(t, p.addr)
	require.Equal(t, byte(0xFF), greet(t, c, 0x00))
	testnet.RequireClosed(t, c)
	logs := p.tunnelLogs(t, 1)
	require.Len(t, logs, 1)
	assert.Equal(t, "auth-failed", field(logs[0], "result"))
	assert.Empty(t, rec.Requests())
}

func TestSOCKS5IPv6Target(t *testing.T) {
	echo := startEcho(t, "::1") // fails without an IPv6 loopback
	rec := &dialtest.Recorder{Next: &dial.Direct{}}
	p := startProxy(t, Config{Dialer: rec})
	c := testnet.Dial(t, p.addr)
	require.Equal(t, byte(0x00), connect5(t, c, echo))
	testnet.EchoRoundTrip(t, c, "over IPv6")
	require.NoError(t, c.Close())
	p.tunnelLogs(t, 1)
	reqs := rec.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, echo, reqs[0].Target)
	assert.True(t, strings.HasPrefix(reqs[0].Target, "[::1]:"), reqs[0].Target)
}

func TestSOCKS5SourceAddress(t *testing.T) {
	origin := startOrigin(t, "127.0.0.1", func(c net.Conn) {
		_, _ = io.WriteString(c, c.RemoteAddr().(*net.TCPAddr).IP.String())
	})
	p := startProxy(t, Config{Dialer: &dial.Direct{LocalIP: net.ParseIP("127.0.0.2")}})
	c := testnet.Dial(t, p.addr)
	require.Equal(t, byte(0x00), connect5(t, c, origin))
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.2", string(got))
	require.NoError(t, c.Close())
	logs := p.tunnelLogs(t, 1)
	assert.Equal(t, "direct@127.0.0.2", field(logs[0], "upstream"))
}

func TestSOCKS5UnsupportedCommands(t *testing.T) {
	echo := startEcho(t, "127.0.0.1")
	for _, cmd := range []byte{0x02, 0x03, 0x09} {
		t.Run(fmt.Sprintf("cmd %#x", cmd), func(t *testing.T) {
			rec := &dialtest.Recorder{Next: &dial.Direct{}}
			p := startProxy(t, Config{Dialer: rec})
			c := testnet.Dial(t, p.addr)
			require.Equal(t, byte(0x00), greet(t, c, 0x00))
			_, err := c.Write(request5(t, cmd, echo))
			require.NoError(t, err)
			assert.Equal(t, byte(0x07), readReply5(t, c))
			testnet.RequireClosed(t, c)
			p.tunnelLogs(t, 1)
			assert.Empty(t, rec.Requests())
		})
	}
}

func TestUnknownVersion(t *testing.T) {
	rec := &dialtest.Recorder{Next: &dial.Direct{}}
	p := startProxy(t, Config{Dialer: rec})
	echo := startEcho(t, "127.0.0.1")

	t.Run("first byte", func(t *testing.T) {
		c := testnet.Dial(t, p.addr)
		_, err := c.Write([]byte{0x06, 0x01, 0x00})
		require.NoError(t, err)
		testnet.RequireClosed(t, c)
		logs := p.tunnelLogs(t, 1)
		assert.Equal(t, "bad-request", field(logs[len(logs)-1], "result"))
	})
	t.Run("request version", func(t *testing.T) {
		c := testnet.Dial(t, p.addr)
		require.Equal(t, byte(0x00), greet(t, c, 0x00))
		req := request5(t, 0x01, echo)
		req[0] = 0x04
		_, err := c.Write(req)
		require.NoError(t, err)
		testnet.RequireClosed(t, c)
		logs := p.tunnelLogs(t, 1)
		assert.Equal(t, "bad-request", field(logs[len(logs)-1], "result"))
	})
	assert.Empty(t, rec.Requests())
}

// Every failure class reaches the client as DESIGN.md's reply code.
func TestSOCKS5ErrorReplies(t *testing.T) {
	blocking := dial.DialerFunc(func(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
		<-ctx.Done()
		return nil, &dial.Error{Target: req.Target, Attempt: 1, Err: fmt.Errorf("%w: %w", dial.ErrTimeout, ctx.Err())}
	})
	cases := []struct {
		name    string
		dialer  dial.Dialer
		target  string
		timeout time.Duration
		code    byte
		result  string
	}{
		{name: "closed port", dialer: &dial.Direct{}, target: testnet.RefusingAddr(t, "127.0.0.1"), code: 0x05, result: "refused"},
		// Resolution fails or, with no usable resolver, times out: 0x04 either way.
		{name: "unresolvable", dialer: &dial.Direct{Resolver: testnet.NoDNS()}, target: "nonexistent.invalid:80", timeout: 2 * time.Second, code: 0x04},
		{name: "timeout", dialer: blocking, target: "192.0.2.1:80", timeout: 50 * time.Millisecond, code: 0x04, result: "timeout"},
		{name: "no upstream", dialer: failing(dial.ErrNoUpstream), target: "example.com:443", code: 0x01, result: "no-upstream"},
		{name: "denied", dialer: failing(dial.ErrDenied), target: "example.com:443", code: 0x02, result: "denied"},
		{name: "unreachable", dialer: failing(dial.ErrTargetUnreachable), target: "example.com:443", code: 0x04, result: "unreachable"},
		{name: "upstream failed", dialer: failing(dial.ErrUpstream), target: "example.com:443", code: 0x05, result: "upstream-failed"},
		{name: "empty host", dialer: &dial.Direct{}, target: ":80", code: 0x01, result: "bad-request"},
		{name: "bad host", dialer: &dial.Direct{}, target: "a b:80", code: 0x01, result: "bad-request"},
		{name: "port 0", dialer: &dial.Direct{}, target: "127.0.0.1:0", code: 0x01, result: "bad-request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &dialtest.Recorder{Next: tc.dialer}
			p := startProxy(t, Config{Dialer: rec, ConnectTimeout: tc.timeout})
			c := testnet.Dial(t, p.addr)
			assert.Equal(t, tc.code, connect5(t, c, tc.target))
			testnet.RequireClosed(t, c)
			logs := p.tunnelLogs(t, 1)
			require.Len(t, logs, 1)
			if tc.result != "" {
				assert.Equal(t, tc.result, field(logs[0], "result"))
			}
			assert.Equal(t, tc.target, field(logs[0], "target"))
			if tc.result == "bad-request" {
				assert.Empty(t, rec.Requests())
				return
			}
			require.Len(t, rec.Requests(), 1)
			assert.Equal(t, tc.target, rec.Requests()[0].Target)
			_, hasDeadline := rec.Contexts()[0].Deadline()
			assert.True(t, hasDeadline, "dial context must carry ConnectTimeout")
		})
	}
}

func TestServeStreamCanceled(t *testing.T) {
	echo := startEcho(t, "127.0.0.1")
	srv, err := New(Config{Dialer: &dial.Direct{}})
	require.NoError(t, err)

	for _, phase := range []string{"handshake", "tunnel"} {
		t.Run(phase, func(t *testing.T) {
			c, sc := testnet.TCPPair(t)
			require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				serveStream(ctx, srv, sc, 0x05)
			}()
			if phase == "tunnel" {
				require.Equal(t, byte(0x00), connect5Rest(t, c, echo))
				testnet.EchoRoundTrip(t, c, "before cancel")
			}
			cancel()
			select {
			case <-done:
			case <-time.After(testTimeout):
				t.Fatal("ServeStream ignored cancellation")
			}
		})
	}
}

func TestServeStreamHandsTunnelOff(t *testing.T) {
	// Once the tunnel is up ServeStream returns, so the listener's
	// goroutine (and the stack the handshake grew) can go; done comes when
	// the tunnel ends, after its access-log line.
	echo := startEcho(t, "127.0.0.1")
	core, logs := observer.New(zapcore.InfoLevel)
	srv, err := New(Config{Dialer: &dial.Direct{}, Logger: zap.New(core)})
	require.NoError(t, err)
	c, sc := testnet.TCPPair(t)
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))

	ended := make(chan int, 1)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		srv.ServeStream(context.Background(), sc, 0x05, func() { ended <- logs.Len() })
	}()
	require.Equal(t, byte(0x00), connect5Rest(t, c, echo))
	select {
	case <-returned:
	case <-time.After(testTimeout):
		t.Fatal("ServeStream still running with the tunnel up")
	}
	testnet.EchoRoundTrip(t, c, "after ServeStream returned")
	select {
	case <-ended:
		t.Fatal("done called while the tunnel is up")
	default:
	}

	require.NoError(t, c.CloseWrite())
	_, err = io.ReadAll(c) // the echo origin closes its side in turn
	require.NoError(t, err)
	select {
	case lines := <-ended:
		assert.Equal(t, 1, lines, "the access-log line comes before done")
	case <-time.After(testTimeout):
		t.Fatal("done not called after the tunnel ended")
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{Dialer: &dial.Direct{}}, true},
		{"no dialer", Config{}, false},
		{"negative idle", Config{Dialer: &dial.Direct{}, IdleTimeout: -1}, false},
		{"negative connect", Config{Dialer: &dial.Direct{}, ConnectTimeout: -time.Second}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			_, newErr := New(tc.cfg)
			if tc.ok {
				assert.NoError(t, err)
				assert.NoError(t, newErr)
				return
			}
			assert.ErrorIs(t, err, ErrInvalidConfig)
			assert.ErrorIs(t, newErr, ErrInvalidConfig)
		})
	}
	s, err := New(Config{Dialer: &dial.Direct{}})
	require.NoError(t, err)
	assert.Equal(t, DefaultIdleTimeout, s.cfg.IdleTimeout)
	assert.Equal(t, DefaultConnectTimeout, s.cfg.ConnectTimeout)
}
