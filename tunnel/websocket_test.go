package tunnel

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/websocket"
)

// A WebSocket handshake through the forward path upgrades, and frames then
// flow both ways over the relayed connection.
func TestForwardWebSocket(t *testing.T) {
	origin := httptest.NewServer(websocket.Handler(func(ws *websocket.Conn) {
		for {
			var msg string
			if websocket.Message.Receive(ws, &msg) != nil || websocket.Message.Send(ws, msg) != nil {
				return
			}
		}
	}))
	t.Cleanup(origin.Close)
	p := startProxy(t, Config{})
	host := origin.Listener.Addr().String()

	cfg, err := websocket.NewConfig("ws://"+host+"/ws", "http://"+host)
	require.NoError(t, err)
	// The client library writes Location.RequestURI() as the request target;
	// an opaque "//host/path" with scheme http makes that the absolute form a
	// proxy expects.
	cfg.Location = &url.URL{Scheme: "http", Opaque: "//" + host + "/ws"}
	c := dialProxy(t, p)
	ws, err := websocket.NewClient(cfg, c)
	require.NoError(t, err)

	for _, msg := range []string{"hello", strings.Repeat("x", 200<<10)} {
		require.NoError(t, websocket.Message.Send(ws, msg))
		var got string
		require.NoError(t, websocket.Message.Receive(ws, &got))
		assert.True(t, msg == got, "echoed message of %d bytes, got %d", len(msg), len(got))
	}
	require.NoError(t, ws.Close())

	f := fieldsOf(p.waitAccessLines(t, 1)[0])
	assert.Equal(t, "http", f["proto"])
	assert.Equal(t, int64(101), f["status"])
	assert.Equal(t, "ok", f["result"])
}

// A 101 the client did not ask for is refused.
func TestForwardUnexpectedUpgrade(t *testing.T) {
	origin := serveTCP(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 4096))
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
	})
	p := startProxy(t, Config{})
	client, _ := proxyClient(t, p)
	resp, body := getBody(t, client, "http://"+origin.Addr()+"/")
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Contains(t, body, "101")
}
