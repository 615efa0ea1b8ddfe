// Package rotate owns hopper's upstreams: parsing list entries, dialing
// through one upstream (HTTP CONNECT, HTTPS proxies, SOCKS5/socks5h, direct
// egress from a local address or prefix), choosing the next upstream lock-free,
// retrying a failed attempt elsewhere, and refreshing the pool from files and
// URLs in the background.
//
// Pool implements dial.Dialer, so the front ends (tunnel, socks, mitm) use it
// without knowing how upstreams are chosen. Selection reads an immutable
// snapshot behind an atomic pointer and advances one atomic cursor: picks never
// lock, never allocate, and a reload (Pool.Replace, driven by Updater) never
// blocks them nor touches established connections. Each *Upstream keeps its
// identity and counters across reloads while its entry is unchanged.
//
// It leaves to others: accepting clients, authentication and rendering errors
// (the front ends, which classify failures with dial.Classify), copying bytes
// (relay), and process wiring, flags and signals (cmd/hopper, which calls
// Updater.Reload on SIGHUP and runs Updater.Run under its errgroup).
// Health (quarantine, probing), sticky sessions, per-target rules and
// selection policies other than round robin are not implemented here yet; the
// per-upstream counters and the snapshot publisher are where they attach.
package rotate
