package dialtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type ctxKey struct{}

// The Recorder keeps each request and its context, in order, and returns
// what Next returns.
func TestRecorder(t *testing.T) {
	boom := errors.New("boom")
	rec := &Recorder{Next: dial.DialerFunc(func(_ context.Context, req *dial.Request) (*dial.Outbound, error) {
		if req.Target == "fail:1" {
			return nil, boom
		}
		return &dial.Outbound{Upstream: "next"}, nil
	})}
	for i, target := range []string{"a:1", "fail:1"} {
		ctx := context.WithValue(context.Background(), ctxKey{}, i)
		out, err := rec.Dial(ctx, &dial.Request{Target: target, Session: "s"})
		if target == "fail:1" {
			assert.ErrorIs(t, err, boom)
		} else {
			require.NoError(t, err)
			assert.Equal(t, "next", out.Upstream)
		}
	}
	reqs := rec.Requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, []string{"a:1", "fail:1"}, []string{reqs[0].Target, reqs[1].Target})
	assert.Equal(t, "s", reqs[1].Session)
	ctxs := rec.Contexts()
	require.Len(t, ctxs, 2)
	assert.Equal(t, 1, ctxs[1].Value(ctxKey{}))
}

func TestMissesDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := MissesDeadline().Dial(ctx, &dial.Request{Target: "example.com:443"})
	assert.ErrorIs(t, err, dial.ErrUpstream)
	var de *dial.Error
	require.ErrorAs(t, err, &de)
	assert.Equal(t, "example.com:443", de.Target)
	assert.NotErrorIs(t, err, dial.ErrTimeout, "it says upstream failure, not timeout")
}

// fatalTB records a helper's failure instead of failing the test.
type fatalTB struct {
	testing.TB
	failed []string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.failed = append(f.failed, fmt.Sprintf(format, args...))
}

func TestLineInterceptor(t *testing.T) {
	ic := &LineInterceptor{}
	assert.True(t, ic.Intercept(&dial.Request{Target: "shop.example:443"}))
	assert.False(t, ic.Intercept(&dial.Request{Target: "shop.example:80"}))
	none := &fatalTB{TB: t}
	ic.Only(none)
	assert.Equal(t, []string{"dialtest: 0 streams intercepted, want 1"}, none.failed)

	client, server := testnet.TCPPair(t)
	require.NoError(t, client.SetDeadline(time.Now().Add(10*time.Second)))
	_, err := io.WriteString(client, "lo\n")
	require.NoError(t, err)
	up, down, err := ic.ServeIntercepted(context.Background(), server, []byte("hel"), &dial.Request{Target: "a:443"})
	require.NoError(t, err)
	assert.Equal(t, [2]int64{6, int64(len("intercepted: hello\n"))}, [2]int64{up, down})
	require.NoError(t, server.Close())
	got, err := io.ReadAll(client)
	require.NoError(t, err)
	assert.Equal(t, "intercepted: hello\n", string(got))
	assert.Equal(t, "a:443", ic.Only(t).Target)

	// A wrapped connection whose client leaves before its line ends.
	ic = &LineInterceptor{}
	client, server = testnet.TCPPair(t)
	_, err = io.WriteString(client, "no end")
	require.NoError(t, err)
	require.NoError(t, client.CloseWrite())
	wrapped := struct{ net.Conn }{server}
	up, down, err = ic.ServeIntercepted(context.Background(), wrapped, nil, &dial.Request{Target: "b:443"})
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, [2]int64{6, 0}, [2]int64{up, down})
	notRaw := &fatalTB{TB: t}
	ic.Only(notRaw)
	assert.Equal(t, []string{"dialtest: the interceptor got a wrapper, not the raw connection"}, notRaw.failed)
}
