// Package mitm is hopper's optional TLS interception stage: the front ends
// (tunnel for CONNECT, socks for SOCKS streams to port 443) hand it streams
// in scope, and it makes every exit look like one consistent browser.
//
// It owns:
//   - the CA (InitCA, LoadCA; ECDSA P-256, key file 0600, never logged) and
//     its export (CA.PEM, CA.DER, CA.ServeHTTP for /ca.pem);
//   - leaf certificates minted on demand for the ClientHello's SNI (or the
//     CONNECT host, or an IP SAN), all sharing one key per process, cached
//     in a bounded LRU with singleflight;
//   - the client side: TLS with ALPN h2 and http/1.1, served with
//     net/http (HTTP/2 and HTTP/1.1), bodies streamed both ways, WebSocket
//     upgrades passed through;
//   - the origin side: one dial through the dial.Dialer per request (or per
//     RequestsPerDial requests), so pool rotation applies inside a tunnel;
//     a uTLS handshake with the identity's ClientHello and full certificate
//     verification; then HTTP/2 with hopper's own client (h2Client, on
//     x/net/http2's Framer and hpack) that sends the browser's connection
//     preface, priorities, pseudo-header order and header order, or
//     HTTP/1.1 written field by field in the browser's order (HTTP2Client
//     lets another client take the HTTP/2 part);
//   - identities: a browser Profile (everything an origin fingerprints,
//     kept as data in profiles_builtin.go, with the JA4 and Akamai
//     fingerprints it must produce) and a bounded cookie jar per (upstream,
//     site), rotated on 429, after a number of requests, after repeated
//     403s, and on ResetUpstream; 429 cools a pair down for Retry-After;
//     with Config.Shared, kept in line across instances through a shared
//     store (shared.go: a JSON record per pair, read on every new origin
//     connection, written when it changes; cookies merged newest first);
//   - the mirror profile: the client's own ClientHello (captured before
//     the TLS server reads it and rebuilt with uTLS's Fingerprinter), its
//     HTTP/2 preface and each request's header order and priority, copied
//     to the origin, so a real browser behind hopper keeps its fingerprint
//     while identities still rotate per exit.
//
// It leaves to others: accepting clients, authentication and the reply
// that opens a tunnel (the front ends, which call Intercept and
// ServeIntercepted through an interface of their own), how an upstream is
// chosen and its health (the dial.Dialer: Config.OnBan and ResetUpstream
// are the hooks to tell it about bans and to hear about recoveries), the
// shared store itself (a SharedStore the caller passes), moving
// bytes of streams that are not TLS (relay), parsing ClientHellos and
// HTTP/2 frames for fingerprints (fingerprint), and flags, files and the
// admin server (cmd/hopper, which serves CA.ServeHTTP at /ca.pem).
//
// Trusting the CA lets hopper read and change every TLS connection a client
// makes through it; the key never leaves the CA directory.
package mitm
