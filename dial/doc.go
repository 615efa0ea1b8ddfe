// Package dial is the outbound contract shared by hopper's front ends and its
// egress implementations.
//
// The front ends (tunnel for HTTP, socks for SOCKS4/5, mitm for intercepted TLS)
// describe what a client asked for in a Request and hand it to a Dialer. An
// implementation (Direct here, rotate.Pool for upstream pools) decides how the
// connection leaves and answers with an Outbound: the connection plus which
// upstream carried it and how many attempts it took.
//
// The package also owns the vocabulary both sides need to agree on: the error
// sentinels and Classify, which front ends use to render one error table
// (DESIGN.md) for HTTP and SOCKS alike, and the proxy-username grammar that
// carries session and country controls.
//
// It deliberately knows nothing of HTTP, SOCKS or upstream selection, and it
// imports nothing from hopper, so every other package can depend on it.
package dial
