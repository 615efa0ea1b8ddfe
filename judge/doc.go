// Package judge is hopper's proxy judge: an HTTP endpoint that echoes, as
// JSON, what a request looked like when it arrived — the address its TCP
// connection came from, its method, target and headers. Fetched through an
// upstream proxy, it shows that proxy's exit IP and whatever the proxy added
// (Via, X-Forwarded-For...), which is how hopper's prober and `hopper check`
// judge anonymity. `hopper judge --listen ADDR` serves it.
//
// The package owns the report's schema (Report) and serving it (Handler,
// Server). It leaves classifying reports to the callers (rotate's
// ClassifyAnonymity decodes the same schema), and TLS fingerprints to a later
// addition. It trusts no forwarding header: the IP is always the peer
// address of the connection.
package judge
