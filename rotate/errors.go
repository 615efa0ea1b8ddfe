package rotate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/hopper-proxy/hopper/dial"
)

// ErrProxyAuth: an upstream refused our credentials (HTTP 407, SOCKS5
// authentication failure, or no acceptable SOCKS5 method). It wraps
// dial.ErrUpstream.
var ErrProxyAuth = fmt.Errorf("%w: credentials refused", dial.ErrUpstream)

// ProxyError is a failed attempt at an upstream proxy: it could not be
// reached, broke its TLS or handshake, or answered with a refusal.
//
// Unwrap yields only the sentinel in Err, never Cause: an upstream's own
// failure classifies as dial.KindFailed (502) even when its cause was a
// timeout or a refused TCP connection to the proxy, while a refusal the
// upstream reports on the target's behalf keeps its meaning
// (dial.ErrTargetRefused, dial.ErrTargetUnreachable, dial.ErrTimeout,
// dial.ErrDenied). Use errors.As to reach Cause.
type ProxyError struct {
	Op     string // "connect", "tls", "handshake", "reply" or "auth"
	Code   int    // HTTP status or SOCKS5 reply code the upstream sent; 0 if none
	Reason string // short detail from the reply (status text, error header)
	Err    error  // the sentinel it maps to; dial.ErrUpstream or one wrapping it when the upstream is at fault
	Cause  error  // the underlying error when there was no reply
}

func (e *ProxyError) Error() string {
	var b strings.Builder
	b.WriteString("upstream ")
	b.WriteString(e.Op)
	if e.Code != 0 {
		fmt.Fprintf(&b, " %d", e.Code)
	}
	if e.Reason != "" {
		b.WriteString(" ")
		b.WriteString(e.Reason)
	}
	b.WriteString(": ")
	if e.Cause != nil {
		b.WriteString(e.Cause.Error())
	} else {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *ProxyError) Unwrap() error { return e.Err }

// proxyFailure wraps an I/O failure talking to the upstream.
func proxyFailure(op string, cause error) error {
	return &ProxyError{Op: op, Err: dial.ErrUpstream, Cause: cause}
}

// AttemptsError is the cause of a dial that failed on more than one
// upstream: it lists every attempt and unwraps to the last one's error, which
// is what dial.Classify sees.
type AttemptsError struct {
	Attempts []dial.Attempt // in order; every Err is non-nil
}

func (e *AttemptsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d attempts failed", len(e.Attempts))
	for i, a := range e.Attempts {
		fmt.Fprintf(&b, "; [%d] %s: %v", i+1, a.Upstream, a.Err)
	}
	return b.String()
}

func (e *AttemptsError) Unwrap() error {
	if len(e.Attempts) == 0 {
		return nil
	}
	return e.Attempts[len(e.Attempts)-1].Err
}

// fault says whose failure an attempt was. It decides whether the pool tries
// another upstream and which counter the upstream is charged.
type fault uint8

const (
	faultUpstream fault = iota // the upstream itself; try another
	faultPolicy                // the upstream's ruleset denied the target; another may allow it
	faultTarget                // the target answered definitively; another exit would get the same
	faultLocal                 // this host failed (resolver trouble); try another, charge no one
	faultCaller                // the caller went away or sent unusable controls
)

// blame attributes a failed attempt. Timeouts are never definitive: a slow
// exit does not prove a slow target, so they are retried (and, reported by
// an upstream, charged to it).
func blame(err error) fault {
	var pe *ProxyError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(pe.Err, dial.ErrTargetRefused), errors.Is(pe.Err, dial.ErrTargetUnreachable):
			return faultTarget
		case errors.Is(pe.Err, dial.ErrDenied):
			return faultPolicy
		}
		return faultUpstream
	}
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, ErrTemplateValue), errors.Is(err, errBadTarget):
		return faultCaller
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return faultTarget
		}
		return faultLocal
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, dial.ErrTargetRefused),
		errors.Is(err, dial.ErrTargetUnreachable):
		return faultTarget
	}
	// A direct dial that timed out or failed otherwise: the egress address
	// may be at fault (unroutable, not assigned), so try another.
	return faultUpstream
}

// retryable reports whether another upstream may succeed where err failed.
func retryable(f fault) bool { return f == faultUpstream || f == faultPolicy || f == faultLocal }
