package socks

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
)

// The client half-closes; the target still answers and the answer arrives.
func TestHalfClose(t *testing.T) {
	origin := startOrigin(t, "127.0.0.1", func(c net.Conn) {
		n, err := io.Copy(io.Discard, c) // until the client's half-close arrives
		if err != nil {
			return
		}
		_ = binary.Write(c, binary.BigEndian, n)
	})
	p := startProxy(t, Config{Dialer: &dial.Direct{}})
	for _, proto := range []string{"socks5", "socks4"} {
		t.Run(proto, func(t *testing.T) {
			c := testnet.Dial(t, p.addr)
			if proto == "socks5" {
				require.Equal(t, byte(0x00), connect5(t, c, origin))
			} else {
				_, err := c.Write(encodeRequest4(t, 0x01, origin, ""))
				require.NoError(t, err)
				require.Equal(t, byte(0x5A), readReply4(t, c))
			}
			_, err := c.Write(make([]byte, 12345))
			require.NoError(t, err)
			require.NoError(t, c.CloseWrite())
			var n int64
			require.NoError(t, binary.Read(c, binary.BigEndian, &n))
			assert.Equal(t, int64(12345), n)
			testnet.RequireClosed(t, c)
			p.tunnelLogs(t, 1)
		})
	}
}

func TestTransfer10MiB(t *testing.T) {
	const size = 10 << 20
	echo := startEcho(t, "127.0.0.1")
	p := startProxy(t, Config{Dialer: &dial.Direct{}})
	c := testnet.Dial(t, p.addr)
	require.Equal(t, byte(0x00), connect5(t, c, echo))

	data := make([]byte, size)
	_, _ = rand.Read(data)
	testnet.BulkEcho(t, c, data)

	logs := p.tunnelLogs(t, 1)
	assert.Equal(t, int64(size), field(logs[0], "up"))
	assert.Equal(t, int64(size), field(logs[0], "down"))
}

// Bytes a client sends right behind its request, before reading any reply,
// reach the target.
func TestEarlyData(t *testing.T) {
	echo := startEcho(t, "127.0.0.1")
	p := startProxy(t, Config{Dialer: &dial.Direct{}})
	const payload = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	cases := []struct {
		name string
		head []byte
		read func(t *testing.T, c net.Conn)
	}{
		{
			name: "socks5",
			head: append([]byte{0x05, 0x01, 0x00}, request5(t, 0x01, echo)...),
			read: func(t *testing.T, c net.Conn) {
				var sel [2]byte
				_, err := io.ReadFull(c, sel[:])
				require.NoError(t, err)
				require.Equal(t, []byte{0x05, 0x00}, sel[:])
				require.Equal(t, byte(0x00), readReply5(t, c))
			},
		},
		{
			name: "socks5 user/pass",
			head: append([]byte{0x05, 0x01, 0x02, 0x01, 0x01, 'u', 0x01, 'p'}, request5(t, 0x01, echo)...),
			read: func(t *testing.T, c net.Conn) {
				var sel [4]byte
				_, err := io.ReadFull(c, sel[:])
				require.NoError(t, err)
				require.Equal(t, []byte{0x05, 0x02, 0x01, 0x00}, sel[:])
				require.Equal(t, byte(0x00), readReply5(t, c))
			},
		},
		{
			name: "socks4",
			head: encodeRequest4(t, 0x01, echo, "u"),
			read: func(t *testing.T, c net.Conn) { require.Equal(t, byte(0x5A), readReply4(t, c)) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testnet.Dial(t, p.addr)
			// One write: the handshake reader sees the payload in its buffer.
			_, err := c.Write(append(bytes.Clone(tc.head), payload...))
			require.NoError(t, err)
			tc.read(t, c)
			got := make([]byte, len(payload))
			_, err = io.ReadFull(c, got)
			require.NoError(t, err)
			assert.Equal(t, payload, string(got))
			require.NoError(t, c.Close())
			logs := p.tunnelLogs(t, 1)
			assert.Equal(t, int64(len(payload)), field(logs[len(logs)-1], "up"))
		})
	}
}
