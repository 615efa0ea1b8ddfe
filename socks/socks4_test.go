package socks

import (
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/internal/testnet/dialtest"
)

func TestSOCKS4Connect(t *testing.T) {
	echo := startEcho(t, "127.0.0.1")
	_, port, err := net.SplitHostPort(echo)
	require.NoError(t, err)
	cases := []struct {
		name, target, userID string
		want                 dial.Request
	}{
		{name: "socks4 ip", target: echo, userID: "bob-session-7-country-DE",
			want: dial.Request{User: "bob", Session: "7", Country: "de"}},
		{name: "socks4a name", target: net.JoinHostPort("localhost", port), userID: "",
			want: dial.Request{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &dialtest.Recorder{Next: &dial.Direct{}}
			p := startProxy(t, Config{Dialer: rec})
			c := testnet.Dial(t, p.addr)
			_, err := c.Write(encodeRequest4(t, 0x01, tc.target, tc.userID))
			require.NoError(t, err)
			require.Equal(t, byte(0x5A), readReply4(t, c))
			testnet.EchoRoundTrip(t, c, "hello through socks4")
			require.NoError(t, c.Close())

			logs := p.tunnelLogs(t, 1)
			reqs := rec.Requests()
			require.Len(t, reqs, 1)
			assert.Equal(t, tc.target, reqs[0].Target, "4a names reach the dialer unresolved")
			assert.Equal(t, dial.ProtocolSOCKS4, reqs[0].Protocol)
			assert.Equal(t, tc.want.User, reqs[0].User)
			assert.Equal(t, tc.want.Session, reqs[0].Session)
			assert.Equal(t, tc.want.Country, reqs[0].Country)
			require.Len(t, logs, 1)
			assert.Equal(t, "ok", field(logs[0], "result"))
			assert.Equal(t, "socks4", field(logs[0], "proto"))
		})
	}
}

func TestSOCKS4Rejected(t *testing.T) {
	echo := startEcho(t, "127.0.0.1")
	cases := []struct {
		name    string
		auth    dial.Authenticator
		request []byte
		result  string
		dials   bool
	}{
		{name: "bind", request: encodeRequest4(t, 0x02, echo, ""), result: "unsupported"},
		{name: "unknown command", request: encodeRequest4(t, 0x03, echo, ""), result: "bad-request"},
		{name: "auth on", auth: aliceAuth, request: encodeRequest4(t, 0x01, echo, "alice"), result: "auth-failed"},
		{name: "refused", request: encodeRequest4(t, 0x01, testnet.RefusingAddr(t, "127.0.0.1"), ""), result: "refused", dials: true},
		{name: "empty 4a host", request: []byte{0x04, 0x01, 0x00, 0x50, 0, 0, 0, 1, 0, 0}, result: "bad-request"},
		{name: "bad 4a host", request: encodeRequest4(t, 0x01, "bad/host:80", ""), result: "bad-request"},
		{name: "port 0", request: encodeRequest4(t, 0x01, "127.0.0.1:0", ""), result: "bad-request"},
		{name: "long user id", request: encodeRequest4(t, 0x01, echo, strings.Repeat("u", maxField4+1)), result: "bad-request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &dialtest.Recorder{Next: &dial.Direct{}}
			p := startProxy(t, Config{Dialer: rec, Auth: tc.auth})
			c := testnet.Dial(t, p.addr)
			_, err := c.Write(tc.request)
			require.NoError(t, err)
			assert.Equal(t, byte(0x5B), readReply4(t, c))
			testnet.RequireClosed(t, c)
			logs := p.tunnelLogs(t, 1)
			require.Len(t, logs, 1)
			assert.Equal(t, tc.result, field(logs[0], "result"))
			if tc.dials {
				assert.Len(t, rec.Requests(), 1)
			} else {
				assert.Empty(t, rec.Requests())
			}
		})
	}
}

func TestReadRequest4Fields(t *testing.T) {
	// A user id of exactly maxField4 bytes is accepted.
	rec := &dialtest.Recorder{Next: &dial.Direct{}}
	p := startProxy(t, Config{Dialer: rec})
	echo := startEcho(t, "127.0.0.1")
	user := strings.Repeat("u", maxField4-len("-session-9")) + "-session-9"
	c := testnet.Dial(t, p.addr)
	_, err := c.Write(encodeRequest4(t, 0x01, echo, user))
	require.NoError(t, err)
	require.Equal(t, byte(0x5A), readReply4(t, c))
	require.NoError(t, c.Close())
	p.tunnelLogs(t, 1)
	reqs := rec.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "9", reqs[0].Session)
	assert.Len(t, reqs[0].User, maxField4-len("-session-9"))
}
