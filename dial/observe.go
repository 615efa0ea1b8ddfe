package dial

import "time"

// Observer is told when a front end starts and finishes serving one tunnel or
// request, for metrics and status pages. Front ends call it from every
// connection's goroutine at once and on the request path, so implementations
// must be safe for concurrent use, cheap, and must not block.
//
// Every TunnelOpened is followed by exactly one TunnelClosed with the same
// protocol, also for requests refused before they named a target, so that
// opened minus closed is the number in flight.
type Observer interface {
	TunnelOpened(p Protocol)
	TunnelClosed(r Record)
}

// Record is the outcome of one tunnel or request: the fields of its
// access-log line. It is passed by value so that observing costs no
// allocation; Dials aliases the dialer's slice and must not be kept.
type Record struct {
	Protocol Protocol
	// Result is "ok", a Kind string, or a front end's own outcome
	// ("auth-failed", "bad-request", "client-closed", ...), as logged.
	Result   string
	Target   string // host:port as the client named it; "" if it never did
	Upstream string // redacted label of the last upstream tried; "" if none
	Attempts int
	// Dials lists the dial attempts with their times when the dialer
	// reported them (Outbound.Attempts or Error.Attempts); may be nil.
	Dials    []Attempt
	Up, Down int64 // bytes client→target and target→client
	Duration time.Duration
	// Established is the time from the start of the request until its
	// outbound connection was ready; zero when none was established.
	Established time.Duration
	Err         error // detail of a failure; never holds a password
}

// NopObserver observes nothing.
type NopObserver struct{}

var _ Observer = NopObserver{}

// TunnelOpened does nothing.
func (NopObserver) TunnelOpened(Protocol) {}

// TunnelClosed does nothing.
func (NopObserver) TunnelClosed(Record) {}
