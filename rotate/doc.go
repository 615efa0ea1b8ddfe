// Package rotate owns hopper's upstreams: parsing list entries, dialing
// through one upstream (HTTP CONNECT, HTTPS proxies, SOCKS5/socks5h, direct
// egress from a local address or prefix), choosing the next upstream
// lock-free, retrying a failed attempt elsewhere, refreshing the pool from
// files and URLs in the background, and keeping the pool healthy and under
// the user's control.
//
// Pool implements dial.Dialer, so the front ends (tunnel, socks, mitm) use it
// without knowing how upstreams are chosen. Selection reads an immutable
// snapshot of the healthy upstreams behind an atomic pointer: picks never
// lock and never allocate, by round robin (one atomic cursor), random,
// least-latency (two random choices) or weighted (by latency and success
// rate). A reload (Pool.Replace, driven by Updater) never blocks picks nor
// touches established connections; each *Upstream keeps its identity,
// counters and health across reloads while its entry is unchanged.
//
// Health: attempts that fail through the upstream's own fault count against
// it (target faults and clients going away do not); after
// Config.FailuresUntilQuarantine in a row it is quarantined for
// Config.Quarantine, doubling on repeat offences, and the selector gets a new
// snapshot without it. Prober (Run in the background) checks every upstream
// by TCP connect, a probe URL, or a judge (see ClassifyAnonymity), releases
// quarantined upstreams that work again, and measures latency and success
// rate for the policies. Sticky sessions (dial.Request.Session) keep a
// session on its upstream for Config.SessionTTL while it stays healthy.
// Provider templates ({session}, {session-digits}, {country}) give gateways a
// fresh session per connection and a stable one per sticky session. Router
// implements dial.Dialer over several named pools chosen by host rules, each
// rule with its own policy, retries and min-interval per (upstream, host).
// A rule with reserve: true gives each connection an exit no other
// connection holds for the same host. Pool.Status and Router.Status are the
// read-only view for the admin API and metrics. Time comes from a Clock, so
// tests drive it with a fake.
//
// Shared state (--state): a Store holds what several hopper instances must
// agree on to act as one proxy. MemoryStore (the default) keeps it in the
// process; RedisStore shares it: the round-robin cursor (handed out in
// blocks, so picks stay local and lock-free), consecutive failures and
// quarantines (published to every instance as they happen), sticky
// sessions, min-interval slots and reservations (leases with an owner
// token, renewed while the connection lives, expiring if its instance
// dies), and probing: each upstream is probed by one instance per interval,
// the holder of its probe lease (released when its prober stops, expiring
// if it dies), whose findings (exit IP, anonymity, pinned exit, probe
// latency and outcome, last error) the others adopt. Every key
// has a TTL and lives under the store's prefix. A store that cannot be
// reached in its short timeout is degraded (logged once,
// StoreHealth.Degraded): the pool serves from local state meanwhile, never
// failing a request for it, and resynchronises when it returns. Store also
// offers a plain key-value interface (KV) for other packages' state, such
// as MITM identities. Upstream lists can be Redis keys too, reloaded when
// their channel announces a change.
//
// It leaves to others: accepting clients, authentication, parsing the
// session and country controls, and rendering errors (the front ends, which
// classify failures with dial.Classify, and call Outbound.Done when a
// connection ends, which releases its reservation), copying bytes (relay),
// the judge server (package judge), and process wiring, flags and signals
// (cmd/hopper, which opens and closes the Store, calls Reload on SIGHUP and
// runs Updater, Prober or Router.Run under its errgroup). Nothing here
// starts a goroutine from a constructor.
package rotate
