// Package admin is hopper's operations surface: an HTTP server, off by
// default, with Prometheus metrics (/metrics), a health check (/healthz), a
// JSON status API (/api/upstreams, /api/stats), a live status page (/), a
// proxy auto-config file (/proxy.pac) and the MITM CA certificate
// (/ca.pem).
//
// Metrics is the dial.Observer the front ends (tunnel, socks) report every
// tunnel to; it keeps a private Prometheus registry and reads per-pool and
// per-upstream figures from an UpstreamSource (rotate.Router) at scrape
// time, so series follow the current lists and carry no per-target labels.
// ServingListener lets /healthz see whether the proxy's listener is served.
//
// The package leaves the proxy itself to tunnel and socks, upstream health
// to rotate, accounts to whatever dial.Authenticator it is given, and the CA
// to mitm: it only reads them. The status page is plain HTML, CSS and
// JavaScript embedded in the binary; it fetches nothing from elsewhere.
package admin
