package dial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// Sentinels a Dialer wraps so that front ends can tell outcomes apart with
// errors.Is. Implementations add context with %w; front ends call Classify.
var (
	// ErrNoUpstream: the pool is empty, or nothing in it may be used now.
	ErrNoUpstream = errors.New("no upstream available")
	// ErrDenied: policy forbids this target for this client.
	ErrDenied = errors.New("target denied by policy")
	// ErrTargetRefused: the target (or an upstream on its behalf) refused.
	ErrTargetRefused = errors.New("target refused the connection")
	// ErrTargetUnreachable: the target's name does not resolve or no route
	// leads to it.
	ErrTargetUnreachable = errors.New("target unreachable")
	// ErrTimeout: establishment did not finish in time.
	ErrTimeout = errors.New("timed out")
	// ErrUpstream: an upstream proxy failed on its own account (bad reply,
	// refused our credentials, answered 5xx, broke the TLS handshake).
	ErrUpstream = errors.New("upstream failed")
)

// Error is a failed dial: which upstream, which target, which attempt, why.
type Error struct {
	Upstream string // redacted label
	Target   string
	Attempt  int // 1-based
	Err      error
	// Attempts lists every try when a dialer made several, for the access
	// log; nil otherwise.
	Attempts []Attempt
}

func (e *Error) Error() string {
	if e.Upstream == "" {
		return fmt.Sprintf("dial %s: %v", e.Target, e.Err)
	}
	return fmt.Sprintf("dial %s via %s (attempt %d): %v", e.Target, e.Upstream, e.Attempt, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Kind is the class of a dial failure, which decides what a client is told.
type Kind uint8

// Failure kinds, in the order of DESIGN.md's error table.
const (
	KindFailed      Kind = iota // 502 upstream-failed / SOCKS 0x05
	KindNoUpstream              // 503 no-upstream / SOCKS 0x01
	KindDenied                  // 403 / SOCKS 0x02
	KindTimeout                 // 504 timeout / SOCKS 0x04
	KindRefused                 // 502 upstream-failed / SOCKS 0x05
	KindUnreachable             // 502 upstream-failed / SOCKS 0x04
)

func (k Kind) String() string {
	switch k {
	case KindNoUpstream:
		return "no-upstream"
	case KindDenied:
		return "denied"
	case KindTimeout:
		return "timeout"
	case KindRefused:
		return "refused"
	case KindUnreachable:
		return "unreachable"
	default:
		return "upstream-failed"
	}
}

// Classify maps a dial error to its Kind using errors.Is and errors.As only.
func Classify(err error) Kind {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, ErrNoUpstream):
		return KindNoUpstream
	case errors.Is(err, ErrDenied):
		return KindDenied
	case errors.Is(err, ErrTimeout),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded):
		return KindTimeout
	case errors.Is(err, ErrTargetRefused), errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused
	case errors.Is(err, ErrTargetUnreachable),
		errors.As(err, &dnsErr),
		errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH):
		return KindUnreachable
	case errors.As(err, &netErr) && netErr.Timeout():
		return KindTimeout
	default:
		return KindFailed
	}
}
