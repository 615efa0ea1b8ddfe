package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/internal/testnet/dialtest"
)

// testAuth accepts alice:secret as account "acct-alice" and counts calls.
type testAuth struct {
	calls atomic.Int64
}

func (a *testAuth) Authenticate(_ context.Context, client net.Addr, user, pass string) (string, error) {
	a.calls.Add(1)
	if client == nil {
		return "", fmt.Errorf("%w: no client address", dial.ErrAuth)
	}
	if user == "alice" && pass == "secret" {
		return "acct-alice", nil
	}
	return "", fmt.Errorf("%w: unknown user %q", dial.ErrAuth, user)
}

func TestAuthRequired(t *testing.T) {
	origin := serveTCP(t, testnet.Echo)
	o := startOrigin(t)
	auth := &testAuth{}
	rec := &dialtest.Recorder{Next: &dial.Direct{}}
	p := startProxy(t, Config{Auth: auth, Dialer: rec})

	for name, extra := range map[string]string{
		"missing":        "",
		"wrong password": "Proxy-Authorization: Basic " + basic("alice", "nope") + "\r\n",
		"not basic":      "Proxy-Authorization: Bearer abc\r\n",
		"bad base64":     "Proxy-Authorization: Basic !!!\r\n",
	} {
		r, body := connectStatus(t, p, origin.Addr(), extra)
		assert.Equal(t, 407, r.status, name)
		assert.Equal(t, `Basic realm="hopper"`, r.header.Get("Proxy-Authenticate"), name)
		assert.NotContains(t, body, "nope", "never echo a password")
	}
	for _, l := range p.waitAccessLines(t, 4) {
		f := fieldsOf(l)
		assert.Equal(t, "auth-failed", f["result"])
		assert.NotContains(t, f["error"], "nope")
	}
	assert.Empty(t, rec.Requests(), "nothing dialed without credentials")

	// Success: CONNECT with controls in the username.
	c := dialProxy(t, p)
	r := sendHead(t, c, "CONNECT %s HTTP/1.1\r\nProxy-Authorization: Basic %s\r\n\r\n",
		origin.Addr(), basic("alice-session-42-country-US", "secret"))
	require.Equal(t, 200, r.status)
	testnet.EchoRoundTrip(t, c, "authed")
	reqs := rec.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, dial.Request{Target: origin.Addr(), Protocol: dial.ProtocolHTTPConnect,
		Client: reqs[0].Client, User: "acct-alice", Session: "42", Country: "us"}, reqs[0])
	require.NotNil(t, reqs[0].Client)

	// curl with -U on the forward path; Go's transport on keep-alive sends
	// the same credentials again, which are checked once per connection.
	requireCurl(t)
	out := runCurl(t, "-x", "http://"+p.addr, "-U", "alice:secret", o.URL+"/hello")
	assert.Equal(t, "hello from origin", out)
	_, stderr, err := curl(t, "-f", "-x", "http://"+p.addr, "-U", "alice:wrong", o.URL+"/hello")
	assert.Error(t, err)
	assert.Contains(t, stderr, "407")

	before := auth.calls.Load()
	client, tr := proxyClient(t, p)
	tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", User: url.UserPassword("alice", "secret"), Host: p.addr})
	for i := 0; i < 3; i++ {
		_, body := getBody(t, client, o.URL+"/hello")
		assert.Equal(t, "hello from origin", body)
	}
	assert.Equal(t, before+1, auth.calls.Load(), "one check per connection")
}

func TestAuthOffParsesUsername(t *testing.T) {
	origin := serveTCP(t, testnet.Echo)
	rec := &dialtest.Recorder{Next: &dial.Direct{}}
	p := startProxy(t, Config{Dialer: rec})
	c := dialProxy(t, p)
	r := sendHead(t, c, "CONNECT %s HTTP/1.1\r\nProxy-Authorization: Basic %s\r\nHopper-Country: JP\r\n\r\n",
		origin.Addr(), basic("anyone-session-abc-def", "whatever"))
	require.Equal(t, 200, r.status)
	reqs := rec.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "anyone", reqs[0].User)
	assert.Equal(t, "abc-def", reqs[0].Session)
	assert.Equal(t, "jp", reqs[0].Country)
	require.NoError(t, c.Close())
	f := fieldsOf(p.waitAccessLines(t, 1)[0])
	assert.Equal(t, "anyone", f["user"])
}

func TestParseBasic(t *testing.T) {
	cases := []struct {
		in         string
		user, pass string
		ok         bool
	}{
		{"Basic " + basic("a", "b"), "a", "b", true},
		{"basic  " + basic("a:b", "c:d"), "a", "b:c:d", true},
		{"Basic " + basic("", ""), "", "", true},
		{"Basic", "", "", false},
		{"Digest abc", "", "", false},
		{"Basic bm9jb2xvbg==", "", "", false}, // "nocolon"
		{"Basic %%%", "", "", false},
	}
	for _, c := range cases {
		u, p, ok := parseBasic([]byte(c.in))
		assert.Equal(t, c.ok, ok, c.in)
		if c.ok {
			assert.Equal(t, c.user, u, c.in)
			assert.Equal(t, c.pass, p, c.in)
		}
	}
}
