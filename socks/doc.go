// Package socks serves SOCKS5 (RFC 1928, with RFC 1929 username/password
// authentication), SOCKS4 and SOCKS4a CONNECT on connections a listener has
// already accepted and sniffed.
//
// It owns the SOCKS handshakes, turning them into a dial.Request (target left
// unresolved, so host names keep socks5h/4a semantics; user, session and
// country parsed from the username or SOCKS4 user id), rendering dial failures
// as SOCKS reply codes in one place (DESIGN.md's error table), and one
// access-log line per stream ("tls": true when the listener handed over the
// *tls.Conn of a client that came in over TLS).
//
// It leaves to others: accepting connections, limits and sniffing the first
// byte (the listener, which calls Server.ServeStream), choosing how a
// connection leaves (a dial.Dialer), checking credentials (a
// dial.Authenticator) and copying bytes (relay.Start, whose goroutines carry
// an established tunnel once the handshake's goroutine has returned).
// SOCKS5 framing comes from github.com/things-go/go-socks5, with its
// resolver replaced (names are never resolved here) and its copy loop
// unused: an established tunnel is relayed on the raw client connection so
// the kernel's splice path is kept.
// BIND and UDP ASSOCIATE are not supported and are answered as such.
package socks
