// Package check verifies upstream lists before they are used: for every entry
// it connects and handshakes through the upstream, fetches a judge (an echo
// server such as `hopper judge`) through it to learn its exit IP and
// anonymity, times the connection and the first byte of the answer, and
// classifies the failure when there is one (refused, auth, timeout, TLS, bad
// reply, unreachable). It backs `hopper check`.
//
// It owns: reading lists from files and URLs in the common formats (one entry
// per line, JSON arrays of {ip, port, protocol}) and deduplicating them
// (Load, Parse); running the checks with bounded concurrency and a time
// budget per entry, with judge failover (Checker); classifying failures from
// rotate's and dial's typed errors (Classify); and rendering the outcome as a
// summary and table, JSON, CSV, a progress display, and a list of the good
// entries that `hopper serve --upstreams` loads (Report, Progress).
//
// It leaves to package rotate everything about talking to an upstream: each
// check dials through a one-upstream rotate.Pool and fetches the judge with
// rotate's Prober, so the command and the server's prober agree on what
// works, on anonymity (rotate.ClassifyAnonymity) and on the scores the
// least-latency and weighted policies use (rotate.Stats.Score). Serving the
// judge is package judge's; flags, terminals and exit codes are cmd/hopper's.
package check
