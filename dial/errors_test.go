package dial

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestClassify(t *testing.T) {
	wrap := func(err error) error { return &Error{Upstream: "u", Target: "t:1", Attempt: 1, Err: err} }
	cases := []struct {
		err  error
		want Kind
	}{
		{fmt.Errorf("x: %w", ErrNoUpstream), KindNoUpstream},
		{wrap(ErrDenied), KindDenied},
		{wrap(context.DeadlineExceeded), KindTimeout},
		{wrap(fmt.Errorf("%w: %w", ErrTimeout, net.ErrClosed)), KindTimeout},
		{wrap(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), KindRefused},
		{wrap(ErrTargetRefused), KindRefused},
		{wrap(&net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}), KindUnreachable},
		{wrap(ErrUpstream), KindFailed},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, Classify(c.err), "%v", c.err)
	}
}

func TestDirectDialRefusedAndLocalIP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	accepted := make(chan net.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c.RemoteAddr()
			c.Close()
		}
	}()
	d := &Direct{LocalIP: net.ParseIP("127.0.0.2")}
	out, err := d.Dial(context.Background(), &Request{Target: addr})
	assert.NoError(t, err)
	assert.Equal(t, "direct@127.0.0.2", out.Upstream)
	src := (<-accepted).(*net.TCPAddr)
	assert.Equal(t, "127.0.0.2", src.IP.String())
	out.Done(false)
	ln.Close()

	_, err = d.Dial(context.Background(), &Request{Target: addr})
	assert.Equal(t, KindRefused, Classify(err), "%v", err)
}

func TestIdlePoolSweepsForgottenKeys(t *testing.T) {
	p := &IdlePool{MaxAge: 20 * time.Millisecond}
	a1, a2 := net.Pipe()
	defer a2.Close()
	p.Put("forgotten", a1)
	time.Sleep(30 * time.Millisecond)
	b1, b2 := net.Pipe()
	defer b2.Close()
	p.Put("other", b1) // sweeps: "forgotten" has outlived MaxAge
	p.mu.Lock()
	_, kept := p.idle["forgotten"]
	p.mu.Unlock()
	assert.False(t, kept, "expired key swept on Put")
	_, err := a1.Write([]byte("x"))
	assert.Error(t, err, "swept connection is closed")
	assert.Equal(t, b1, p.Get("other"))
	assert.NoError(t, p.Close())
}
