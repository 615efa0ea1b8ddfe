package socks

import (
	"bytes"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

func TestReplyCodes(t *testing.T) {
	wrap := func(err error) error { return &dial.Error{Upstream: "u", Target: "t:1", Attempt: 2, Err: err} }
	cases := []struct {
		err  error
		code byte
	}{
		{nil, 0x00},
		{wrap(dial.ErrNoUpstream), 0x01},
		{wrap(dial.ErrDenied), 0x02},
		{wrap(dial.ErrTimeout), 0x04},
		{wrap(dial.ErrTargetUnreachable), 0x04},
		{wrap(dial.ErrTargetRefused), 0x05},
		{wrap(dial.ErrUpstream), 0x05},
		{wrap(fmt.Errorf("something else")), 0x05},
		{fmt.Errorf("%w: x", errBadRequest), 0x01},
		{fmt.Errorf("%w: x", errUnsupported), 0x07},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.code, replyCode5(tc.err), "%v", tc.err)
		want4 := rep4Rejected
		if tc.err == nil {
			want4 = rep4Granted
		}
		assert.Equal(t, want4, replyCode4(tc.err), "%v", tc.err)
	}
}

func TestWriteReply(t *testing.T) {
	cases := []struct {
		name  string
		code  byte
		bound net.Addr
		want5 []byte
		want4 []byte
	}{
		{"ipv4", 0x00, &net.TCPAddr{IP: net.ParseIP("127.0.0.2"), Port: 0x1234},
			[]byte{5, 0, 0, 1, 127, 0, 0, 2, 0x12, 0x34}, []byte{0, 0x5A, 0x12, 0x34, 127, 0, 0, 2}},
		{"ipv6", 0x00, &net.TCPAddr{IP: net.ParseIP("::1"), Port: 80},
			[]byte{5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80}, []byte{0, 0x5A, 0, 0, 0, 0, 0, 0}},
		{"not tcp", 0x00, &net.UnixAddr{Name: "x"},
			[]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}, []byte{0, 0x5A, 0, 0, 0, 0, 0, 0}},
		{"failure hides bound", 0x05, &net.TCPAddr{IP: net.ParseIP("127.0.0.2"), Port: 1},
			[]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}, []byte{0, 0x5B, 0, 0, 0, 0, 0, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b5, b4 bytes.Buffer
			require.NoError(t, writeReply5(&b5, tc.code, tc.bound))
			assert.Equal(t, tc.want5, b5.Bytes())
			code4 := rep4Granted
			if tc.code != 0 {
				code4 = rep4Rejected
			}
			require.NoError(t, writeReply4(&b4, code4, tc.bound))
			assert.Equal(t, tc.want4, b4.Bytes())
		})
	}
}

func TestValidHost(t *testing.T) {
	for h, ok := range map[string]bool{
		"example.com": true, "localhost": true, "xn--bcher-kva.example": true, "a_b.local": true,
		"127.0.0.1": true, "::1": true, "": false, "a b": false, "a/b": false, "a:b": false,
		"a\x00b": false, "[::1]": false, string(bytes.Repeat([]byte("a"), 254)): false,
	} {
		assert.Equal(t, ok, validHost(h), "%q", h)
	}
}
