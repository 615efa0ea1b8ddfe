package main

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"
)

// useNXDomainResolver points the process's resolver at a DNS server on
// loopback that answers every query NXDOMAIN, so that a test can make name
// resolution fail without sending a packet anywhere else. It must be called
// before hopper starts and is undone at cleanup (after hopper stops).
// dial.Direct resolves with net.DefaultResolver and offers no hook, hence
// the process-wide switch, confined to this test's lifetime.
func useNXDomainResolver(t *testing.T) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		answerNXDomain(pc)
	}()
	preferGo, dialFn := net.DefaultResolver.PreferGo, net.DefaultResolver.Dial
	net.DefaultResolver.PreferGo = true
	net.DefaultResolver.Dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}
	t.Cleanup(func() {
		net.DefaultResolver.PreferGo, net.DefaultResolver.Dial = preferGo, dialFn
		pc.Close()
		wg.Wait()
	})
}

// answerNXDomain answers each query on pc with NXDOMAIN until pc closes.
func answerNXDomain(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		resp := dnsmessage.Message{
			Header:    dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RCode: dnsmessage.RCodeNameError},
			Questions: []dnsmessage.Question{q},
		}
		out, err := resp.Pack()
		if err == nil {
			_, _ = pc.WriteTo(out, from)
		}
	}
}
