// Package judge is hopper's proxy judge: an HTTP endpoint that echoes, as
// JSON, what a request looked like when it arrived — the address its TCP
// connection came from, its method, target and headers, and the order the
// headers came in. Fetched through an upstream proxy, it shows that proxy's
// exit IP and whatever the proxy added (Via, X-Forwarded-For...), which is
// how hopper's prober and `hopper check` judge anonymity. On its TLS port
// (ServeTLS) it also shows what a fingerprinting origin sees: the JA4 of the
// ClientHello and, over HTTP/2, the Akamai fingerprint of the connection's
// preface with the request's pseudo-header order. `hopper judge --listen
// ADDR [--tls-listen ADDR]` serves it.
//
// The package owns the report's schema (Report) and serving it (Handler,
// Server). It leaves classifying reports to the callers (rotate's
// ClassifyAnonymity decodes the same schema) and parsing ClientHellos and
// HTTP/2 frames to package fingerprint. It trusts no forwarding header: the
// IP is always the peer address of the connection.
package judge
