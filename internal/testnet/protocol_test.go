package testnet

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/fingerprint"
)

func TestReadSOCKS5Handshake(t *testing.T) {
	methods, err := ReadSOCKS5Methods(bytes.NewReader([]byte{5, 2, 0, 2}))
	require.NoError(t, err)
	assert.Equal(t, []byte{0, 2}, methods)
	_, err = ReadSOCKS5Methods(bytes.NewReader([]byte{4, 1, 0}))
	assert.ErrorContains(t, err, "version 4")
	_, err = ReadSOCKS5Methods(bytes.NewReader([]byte{5, 2, 0}))
	assert.Error(t, err, "cut short")

	user, pass, err := ReadSOCKS5UserPass(bytes.NewReader([]byte("\x01\x05alice\x02pw")))
	require.NoError(t, err)
	assert.Equal(t, [2]string{"alice", "pw"}, [2]string{user, pass})
	_, _, err = ReadSOCKS5UserPass(bytes.NewReader([]byte("\x02\x05alice\x02pw")))
	assert.ErrorContains(t, err, "version 2")
	_, _, err = ReadSOCKS5UserPass(bytes.NewReader([]byte("\x01\x05alice\x02p")))
	assert.Error(t, err, "cut short")

	for _, tc := range []struct {
		req  string
		atyp byte
		host string
	}{
		{"\x05\x01\x00\x01\x7f\x00\x00\x02\x1f\x90", SOCKS5IPv4, "127.0.0.2"},
		{"\x05\x01\x00\x03\x0bexample.com\x1f\x90", SOCKS5Domain, "example.com"},
		{"\x05\x01\x00\x04" + string(net.IPv6loopback) + "\x1f\x90", SOCKS5IPv6, "::1"},
	} {
		atyp, host, port, err := ReadSOCKS5Connect(strings.NewReader(tc.req))
		require.NoError(t, err, tc.host)
		assert.Equal(t, tc.atyp, atyp)
		assert.Equal(t, tc.host, host)
		assert.Equal(t, 8080, port)
	}
	for _, bad := range []string{
		"\x05\x02\x00\x01\x7f\x00\x00\x01\x1f\x90", // BIND
		"\x04\x01\x00\x01\x7f\x00\x00\x01\x1f\x90", // version
		"\x05\x01\x00\x02\x7f\x00\x00\x01\x1f\x90", // address type
		"\x05\x01\x00\x01\x7f\x00\x00\x01\x1f",     // cut short
	} {
		_, _, _, err := ReadSOCKS5Connect(strings.NewReader(bad))
		assert.Error(t, err, "%q", bad)
	}
}

func TestSOCKS5Reply(t *testing.T) {
	assert.Equal(t, []byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}, SOCKS5Reply(5, nil))
	assert.Equal(t, []byte{5, 0, 0, 1, 127, 0, 0, 3, 0x1f, 0x90},
		SOCKS5Reply(0, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3), Port: 8080}))
}

func TestForwardHTTP(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", r.URL.Path)
		_, _ = w.Write([]byte("hello"))
	}))
	defer origin.Close()
	out, err := net.Dial("tcp", origin.Listener.Addr().String())
	require.NoError(t, err)
	defer out.Close()
	obr := bufio.NewReader(out)
	var client bytes.Buffer
	for _, path := range []string{"/a", "/b"} { // two exchanges on one origin connection
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + origin.URL + path + " HTTP/1.1\r\nHost: x\r\n\r\n")))
		require.NoError(t, err)
		require.NoError(t, ForwardHTTP(&client, out, obr, req))
		resp, err := http.ReadResponse(bufio.NewReader(&client), req)
		require.NoError(t, err)
		assert.Equal(t, path, resp.Header.Get("X-Path"))
	}
	require.NoError(t, out.Close())
	req, err := http.NewRequest(http.MethodGet, origin.URL, nil)
	require.NoError(t, err)
	assert.Error(t, ForwardHTTP(&client, out, obr, req), "the origin connection is gone")
}

// H2Get sends the preface it is given and returns the body.
func TestH2GetShowsThePreface(t *testing.T) {
	pre := fingerprint.HTTP2{
		Settings:          []fingerprint.Setting{{ID: 1, Value: 65536}, {ID: 4, Value: 6291456}},
		WindowUpdate:      15663105,
		HeadersPriority:   &fingerprint.Priority{Exclusive: true, Weight: 255},
		PseudoHeaderOrder: []string{":method", ":authority", ":scheme", ":path"},
		FirstStreamID:     1,
	}
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.Proto + " " + r.Host + r.URL.Path + " " + r.Header.Get("X-A")))
	}))
	origin.EnableHTTP2 = true
	origin.StartTLS()
	defer origin.Close()
	cfg := origin.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", origin.Listener.Addr().String(), cfg)
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, "h2", conn.ConnectionState().NegotiatedProtocol)
	body := H2Get(t, conn, pre, "example.com", "/p", [][2]string{{"x-a", "1"}})
	assert.Equal(t, "HTTP/2.0 example.com/p 1", string(body))
}
