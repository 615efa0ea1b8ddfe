// Package tunnel is hopper's listener and HTTP front end.
//
// It owns the accept loop and everything that happens on an accepted
// connection before bytes start to flow: connection limits, the header
// deadline, sniffing the first byte (SOCKS or HTTP, or a TLS handshake when
// it serves as an HTTPS proxy, then again inside TLS), parsing HTTP/1.x request
// heads, proxy authentication at the boundary, HTTP CONNECT tunnels and
// plain-HTTP forward requests (keep-alive, streamed bodies, WebSocket
// upgrades, a response header timeout that sends a safe request once more),
// and rendering every failure to the client per DESIGN.md's error table.
//
// It leaves to others:
//   - how an outbound connection is made and through which upstream: a
//     dial.Dialer answers each dial.Request;
//   - who may use the proxy: a dial.Authenticator checks credentials;
//   - the health of upstreams: a FailureReporter hears of those that took a
//     forward request and never answered it;
//   - SOCKS: connections whose first byte is 0x04 or 0x05 are handed, raw,
//     to a StreamHandler;
//   - moving bytes once a tunnel is up: relay.Start (relay.Pipe for WebSocket
//     upgrades), which keeps the kernel's splice path between raw TCP
//     connections. A CONNECT tunnel is handed to relay.Start's goroutines
//     and the one that read its head ends, so an idle tunnel holds no
//     handshake stack or buffers.
//
// The package never wraps an accepted connection in another net.Conn, other
// than the *tls.Conn of a client that came in over TLS: bytes it has buffered
// while reading a head are written to the other side first, and the raw
// *net.TCPConn is relayed afterwards.
package tunnel
