// Package fingerprint reads what a client's first bytes say about it: the
// TLS ClientHello (and its JA4 fingerprint, per the FoxIO specification),
// the HTTP/2 connection preface (SETTINGS, WINDOW_UPDATE and PRIORITY
// frames, the first request's pseudo-header order and priority, as the
// Akamai fingerprint "S|WU|P|PS"), and the order in which request headers
// arrive over HTTP/1.1 and HTTP/2.
//
// It owns the parsers and the capture types that watch a connection's
// inbound bytes without changing them (HTTP1Capture, HTTP2Capture, Tee).
// It leaves serving to others: the judge reports what it reads, and the
// interception stage copies a client's fingerprint to the origin. It depends
// on nothing of hopper's, so both may use it.
//
// Every parser here takes untrusted input: lengths are checked before use,
// buffers are bounded, and a capture that meets bytes it cannot follow
// stops recording rather than guessing.
package fingerprint
