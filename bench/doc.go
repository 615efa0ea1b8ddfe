// Package bench measures hopper against a direct loopback connection and
// against other proxies, in one run, on the same machine.
//
// Run starts its own loopback origins (a TCP source and sink, an echo server
// and an HTTP server with a 1 KiB body), builds hopper from the module tree
// (or uses a given binary), starts it as a subprocess, starts tinyproxy,
// dante and glider when they are installed, and measures every scenario first direct and
// then through each proxy, over HTTP CONNECT and SOCKS5: bulk throughput, new
// tunnels per second, echo round trip, HTTP forward requests per second,
// memory per idle tunnel and the relay's CPU per GiB and per 1,000 tunnels,
// plus hopper chained through a second hopper instance, and a bare relay
// (ServeBareRelay: a handshake, then io.Copy each way) that shows what one
// proxy hop costs on the machine whatever the proxy (and two bare relays in
// a row for chained mode). Each figure is the
// median of several repetitions; the result is a Report that renders as one
// markdown table.
//
// The package owns the client side of the CONNECT and SOCKS5 handshakes it
// needs, the origins, the subprocesses it starts and the /proc readings. It
// does not import hopper's packages: it measures the built binary as a user
// would run it. Go microbenchmarks of individual packages live beside the
// code they measure, not here.
//
// Everything listens on and dials 127.0.0.1 only, and every scenario is
// bounded by Options.Duration.
package bench
