package rotate

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/hopper-proxy/hopper/dial"
)

func TestBlame(t *testing.T) {
	opErr := func(errno error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: errno}}
	}
	cases := []struct {
		name string
		err  error
		want fault
	}{
		{"cannot reach the upstream", proxyFailure("connect", opErr(syscall.ECONNREFUSED)), faultUpstream},
		{"upstream TLS", proxyFailure("tls", fmt.Errorf("bad certificate")), faultUpstream},
		{"407", &ProxyError{Op: "reply", Code: 407, Err: ErrProxyAuth}, faultUpstream},
		{"upstream 504", &ProxyError{Op: "reply", Code: 504, Err: dial.ErrTimeout}, faultUpstream},
		{"upstream ruleset", &ProxyError{Op: "reply", Code: 2, Err: dial.ErrDenied}, faultPolicy},
		{"target refused via upstream", &ProxyError{Op: "reply", Code: 5, Err: dial.ErrTargetRefused}, faultTarget},
		{"target unreachable via upstream", &ProxyError{Op: "reply", Code: 4, Err: dial.ErrTargetUnreachable}, faultTarget},
		{"direct refused", opErr(syscall.ECONNREFUSED), faultTarget},
		{"direct no route", opErr(syscall.EHOSTUNREACH), faultTarget},
		{"name not found", &net.DNSError{Name: "x.invalid", IsNotFound: true}, faultTarget},
		{"resolver timeout", &net.DNSError{Name: "x.example", IsTimeout: true}, faultLocal},
		{"direct timeout", fmt.Errorf("%w: %w", dial.ErrTimeout, context.DeadlineExceeded), faultUpstream},
		{"caller left", context.Canceled, faultCaller},
		{"bad template value", fmt.Errorf("%w: x", ErrTemplateValue), faultCaller},
		{"bad target", errBadTarget, faultCaller},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, blame(c.err), c.name)
	}
	assert.True(t, retryable(faultUpstream))
	assert.True(t, retryable(faultPolicy))
	assert.True(t, retryable(faultLocal))
	assert.False(t, retryable(faultTarget))
	assert.False(t, retryable(faultCaller))
}

func TestProxyErrorHidesCauseFromClassify(t *testing.T) {
	err := proxyFailure("connect", fmt.Errorf("%w: %w", dial.ErrTimeout, context.DeadlineExceeded))
	assert.Equal(t, dial.KindFailed, dial.Classify(err), "an upstream's own timeout is a 502, not a target timeout")
	assert.Contains(t, err.Error(), "timed out")
	ae := &AttemptsError{Attempts: []dial.Attempt{
		{Upstream: "a", Err: proxyFailure("connect", syscall.ECONNREFUSED)},
		{Upstream: "b", Err: &ProxyError{Op: "reply", Code: 5, Err: dial.ErrTargetRefused}},
	}}
	assert.Equal(t, dial.KindRefused, dial.Classify(ae), "the last attempt decides")
	assert.Equal(t, "2 attempts failed; [1] a: upstream connect: connection refused; [2] b: upstream reply 5: target refused the connection", ae.Error())
}
