package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/rotate"
)

// Outcome is what a check found. Its names are the "result" column of every
// output format.
type Outcome uint8

// Outcomes, the good one first.
const (
	// OutcomeOK: the upstream works and passes the filters.
	OutcomeOK Outcome = iota
	// OutcomeFiltered: the upstream works but is below --min-anonymity or
	// above --max-latency (Result.Err wraps ErrAnonymity or ErrTooSlow).
	OutcomeFiltered
	// OutcomeRefused: the upstream's port refused the connection.
	OutcomeRefused
	// OutcomeAuth: the upstream refused the entry's credentials, or wants
	// some and the entry has none.
	OutcomeAuth
	// OutcomeTimeout: the budget ran out (a silent or very slow upstream),
	// or the upstream reported that the judge timed out.
	OutcomeTimeout
	// OutcomeTLS: TLS with an https:// upstream, or with an https judge
	// through it, failed (untrusted certificate, not TLS, bad handshake).
	OutcomeTLS
	// OutcomeBadReply: the upstream broke its protocol (garbage, a malformed
	// or unexpected reply, hanging up mid-handshake), or every judge's
	// answer through it was not a judge report.
	OutcomeBadReply
	// OutcomeUnreachable: the upstream's host could not be reached, or no
	// judge could be reached through it (it refused, denied or failed to
	// connect to every one).
	OutcomeUnreachable
	// OutcomeFailed: anything else.
	OutcomeFailed

	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "filtered", "refused", "auth", "timeout", "tls", "bad-reply", "unreachable", "failed"}

func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "invalid"
}

// MarshalText renders the outcome's name.
func (o Outcome) MarshalText() ([]byte, error) {
	if o >= numOutcomes {
		return nil, fmt.Errorf("invalid outcome %d", uint8(o))
	}
	return []byte(outcomeNames[o]), nil
}

// Working reports whether the upstream worked (OK or filtered).
func (o Outcome) Working() bool { return o == OutcomeOK || o == OutcomeFiltered }

// Errors of working entries that a filter excluded.
var (
	// ErrAnonymity: the judge found the upstream less anonymous than
	// Config.MinAnonymity.
	ErrAnonymity = errors.New("below the minimum anonymity")
	// ErrTooSlow: the time to first byte exceeded Config.MaxLatency.
	ErrTooSlow = errors.New("above the maximum latency")
	// ErrJudgeStatus: the judge's URL fetched through the upstream answered
	// 403 or 5xx: an HTTP proxy's own error page for a judge it would not or
	// could not fetch, or a failing judge.
	ErrJudgeStatus = errors.New("judge fetch answered an error status")
	// ErrBadJudge: a judge's direct answer was not a small JSON report with
	// a valid "ip" (through an upstream, rotate.ErrBadJudgeReply says so).
	ErrBadJudge = errors.New("judge answer is not a judge report")
)

// Classify maps the error of a failed check to its outcome, and reports
// whether the failure was on the judge's side, so that another judge may
// succeed through the same upstream. It reads only typed errors
// (rotate.ProxyError and its sentinels, dial's sentinels and Classify, TLS
// and syscall errors), never error text.
func Classify(err error) (o Outcome, judgeSide bool) {
	if err == nil {
		return OutcomeOK, false
	}
	if errors.Is(err, rotate.ErrProxyAuth) {
		return OutcomeAuth, false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		// The entry's own deadline, wrapped around whatever it cut short.
		return OutcomeTimeout, false
	}
	if errors.Is(err, ErrJudgeStatus) {
		return OutcomeUnreachable, true
	}
	if errors.Is(err, ErrBadJudge) {
		return OutcomeBadReply, true
	}
	var pe *rotate.ProxyError
	if errors.As(err, &pe) {
		return classifyProxy(pe)
	}
	if isTLS(err) {
		return OutcomeTLS, true // TLS with the judge, through a working tunnel
	}
	switch dial.Classify(err) {
	case dial.KindTimeout:
		return OutcomeTimeout, false
	case dial.KindRefused, dial.KindUnreachable, dial.KindDenied:
		// Only a direct entry fails so without a ProxyError: the judge
		// itself refused or could not be reached.
		return OutcomeUnreachable, true
	}
	return OutcomeFailed, false
}

// classifyProxy classifies a failed attempt at an upstream proxy: with a
// Cause, something went wrong talking to it; without one, it answered.
func classifyProxy(pe *rotate.ProxyError) (Outcome, bool) {
	if c := pe.Cause; c != nil {
		switch {
		case errors.Is(c, rotate.ErrBadJudgeReply):
			return OutcomeBadReply, true
		case dial.Classify(c) == dial.KindTimeout:
			return OutcomeTimeout, false
		case pe.Op == "tls" || isTLS(c):
			return OutcomeTLS, false
		case errors.Is(c, syscall.ECONNREFUSED):
			return OutcomeRefused, false
		case dial.Classify(c) == dial.KindUnreachable:
			return OutcomeUnreachable, false
		case pe.Op == "connect":
			return OutcomeFailed, false
		case pe.Op == "probe":
			// The tunnel was up; the exchange with the judge broke.
			return OutcomeBadReply, true
		}
		return OutcomeBadReply, false
	}
	switch {
	case errors.Is(pe.Err, dial.ErrTargetRefused), errors.Is(pe.Err, dial.ErrTargetUnreachable),
		errors.Is(pe.Err, dial.ErrDenied):
		return OutcomeUnreachable, true
	case errors.Is(pe.Err, dial.ErrTimeout):
		return OutcomeTimeout, true
	case pe.Code >= 500 || pe.Code == 403:
		// A proxy's own error page for a target it could not (or would
		// not) reach.
		return OutcomeUnreachable, true
	}
	return OutcomeBadReply, false
}

// isTLS reports a TLS or certificate failure.
func isTLS(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		header   tls.RecordHeaderError
		alert    tls.AlertError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &header) || errors.As(err, &alert) ||
		errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid)
}
