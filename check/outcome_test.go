package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/rotate"
)

func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	pe := func(op string, code int, sentinel, cause error) error {
		if sentinel == nil {
			sentinel = dial.ErrUpstream
		}
		return &rotate.ProxyError{Op: op, Code: code, Err: sentinel, Cause: cause}
	}
	wrap := func(err error) error { return &dial.Error{Upstream: "u", Target: "t:1", Attempt: 1, Err: err} }
	cases := []struct {
		name      string
		err       error
		want      Outcome
		judgeSide bool
	}{
		{"nil", nil, OutcomeOK, false},
		{"407", wrap(pe("reply", 407, rotate.ErrProxyAuth, nil)), OutcomeAuth, false},
		{"socks auth", wrap(pe("auth", 1, rotate.ErrProxyAuth, nil)), OutcomeAuth, false},
		{"port closed", wrap(pe("connect", 0, nil, refused)), OutcomeRefused, false},
		{"connect timeout", wrap(pe("connect", 0, nil, fmt.Errorf("%w: %w", dial.ErrTimeout, net.ErrClosed))), OutcomeTimeout, false},
		{"silent handshake", wrap(pe("handshake", 0, nil, context.DeadlineExceeded)), OutcomeTimeout, false},
		{"silent reply", pe("reply", 0, nil, os.ErrDeadlineExceeded), OutcomeTimeout, false},
		{"caller deadline", wrap(fmt.Errorf("%w: %w", context.DeadlineExceeded, pe("handshake", 0, nil, io.EOF))), OutcomeTimeout, false},
		{"budget spent", budgetSpent(nil, 1), OutcomeTimeout, false},
		{"budget spent after a judge", budgetSpent(wrap(pe("reply", 5, dial.ErrTargetRefused, nil)), 1), OutcomeTimeout, false},
		{"tls eof", wrap(pe("tls", 0, nil, io.EOF)), OutcomeTLS, false},
		{"tls untrusted", wrap(pe("tls", 0, nil, x509.UnknownAuthorityError{})), OutcomeTLS, false},
		{"judge tls", fmt.Errorf("probe TLS to x: %w", tls.RecordHeaderError{}), OutcomeTLS, true},
		{"malformed", wrap(pe("reply", 0, nil, nil)), OutcomeBadReply, false},
		{"hung up", wrap(pe("handshake", 0, nil, io.ErrUnexpectedEOF)), OutcomeBadReply, false},
		{"unexpected status", wrap(pe("reply", 400, nil, nil)), OutcomeBadReply, false},
		{"not a report", pe("probe", 0, nil, fmt.Errorf("%w (status 200)", rotate.ErrBadJudgeReply)), OutcomeBadReply, true},
		{"tunnel broke", pe("probe", 0, nil, io.ErrUnexpectedEOF), OutcomeBadReply, true},
		{"judge refused (socks)", wrap(pe("reply", 5, dial.ErrTargetRefused, nil)), OutcomeUnreachable, true},
		{"judge unreachable", wrap(pe("reply", 4, dial.ErrTargetUnreachable, nil)), OutcomeUnreachable, true},
		{"judge denied", wrap(pe("reply", 2, dial.ErrDenied, nil)), OutcomeUnreachable, true},
		{"proxy 502", wrap(pe("reply", 502, nil, nil)), OutcomeUnreachable, true},
		{"proxy 403", wrap(pe("reply", 403, nil, nil)), OutcomeUnreachable, true},
		{"proxy 504", wrap(pe("reply", 504, dial.ErrTimeout, nil)), OutcomeTimeout, true},
		{"forward 403", fmt.Errorf("%w 403: %w", ErrJudgeStatus, pe("probe", 0, nil, rotate.ErrBadJudgeReply)), OutcomeUnreachable, true},
		{"upstream name", wrap(pe("connect", 0, nil, &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true})), OutcomeUnreachable, false},
		{"connect reset", wrap(pe("connect", 0, nil, syscall.ECONNRESET)), OutcomeFailed, false},
		{"direct, judge refused", wrap(refused), OutcomeUnreachable, true},
		{"several attempts", wrap(&rotate.AttemptsError{Attempts: []dial.Attempt{{Err: io.EOF}, {Err: pe("reply", 407, rotate.ErrProxyAuth, nil)}}}), OutcomeAuth, false},
		{"other", errors.New("something else"), OutcomeFailed, false},
	}
	for _, c := range cases {
		o, judgeSide := Classify(c.err)
		assert.Equal(t, c.want, o, "%s: %v", c.name, c.err)
		assert.Equal(t, c.judgeSide, judgeSide, "%s: judge side", c.name)
	}
}

func TestOutcomeNames(t *testing.T) {
	seen := map[string]bool{}
	for o := range numOutcomes {
		b, err := o.MarshalText()
		assert.NoError(t, err)
		assert.Equal(t, o.String(), string(b))
		assert.False(t, seen[o.String()], "distinct names")
		seen[o.String()] = true
	}
	_, err := numOutcomes.MarshalText()
	assert.Error(t, err)
	assert.Equal(t, "invalid", numOutcomes.String())
	assert.True(t, OutcomeFiltered.Working())
	assert.False(t, OutcomeTimeout.Working())
}
