package tunnel

import (
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// FuzzServeTLSConn is FuzzServeConn through the HTTPS-proxy front end
// (Config.TLS), covering the sniff after TLS termination. Unless raw is
// set, a client completes a real TLS handshake with the proxy, sends data
// inside it and closes its side (close_notify); the invariants are
// FuzzServeConn's, on the decrypted reply. With raw set, a plain TCP client
// sends the handshake record type (0x16) and then data, a handshake that
// can never complete: the reply is nothing or TLS records, nothing reaches
// the SOCKS handler or the Dialer, and exactly one "tls-failed" access line
// is counted. Either way the server closes the connection and releases it,
// with every tunnel it opened closed in the Observer.
func FuzzServeTLSConn(f *testing.F) {
	for _, s := range serveSeeds() {
		f.Add(false, s)
	}
	f.Add(false, []byte(nil))
	f.Add(false, []byte("\x16\x03\x01\x00\x05hello")) // a handshake inside TLS
	for _, s := range []string{
		"",
		"\x03\x01\x00\x05hello",
		"\x03\x03\x00\x00",
		"\x03\x01\xff\xff",
		"\x03\x01\x00\x04\x01\x00\x00\x00GET / HTTP/1.1\r\n\r\n",
	} {
		f.Add(true, []byte(s))
	}

	cert, roots := selfSigned(f)
	// Resumed sessions spare each input the certificate signature: what is
	// fuzzed is what follows the handshake.
	client := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1",
		ClientSessionCache: tls.NewLRUClientSessionCache(1)}

	var dials atomic.Int64
	var obs fuzzObserver
	// The handshake counts against HeaderTimeout: generous, so that a
	// loaded machine is no finding. Every input ends with the client's
	// close, never with the deadline.
	srv := newServer(f, Config{Dialer: refusingDialer(&dials), SOCKS: socksMarker, Logger: zap.NewNop(),
		Observer: &obs, TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		HeaderTimeout: 5 * time.Second, IdleTimeout: time.Second})
	addr := serve(f, srv)

	f.Fuzz(func(t *testing.T, raw bool, data []byte) {
		before, failedBefore := dials.Load(), obs.tlsFailed.Load()
		if !raw {
			resp, readErr := fuzzTLSExchange(t, addr, client, data)
			checkServeReply(t, data, resp, readErr, dials.Load()-before)
			waitReleased(t, srv, &obs)
			if n := obs.tlsFailed.Load() - failedBefore; n != 0 {
				t.Fatalf("%d failed handshakes logged for one that succeeded", n)
			}
			return
		}
		resp, _ := fuzzExchange(t, addr, append([]byte{recordTypeHandshake}, data...))
		if len(resp) > 0 && resp[0] != 0x15 && resp[0] != recordTypeHandshake {
			t.Fatalf("a failed handshake got more than TLS records: %q", resp)
		}
		if n := dials.Load() - before; n != 0 {
			t.Fatalf("%d dials before a handshake completed", n)
		}
		waitReleased(t, srv, &obs)
		if n := obs.tlsFailed.Load() - failedBefore; n != 1 {
			t.Fatalf("%d failed handshakes logged for one, want 1", n)
		}
	})
}

// fuzzTLSExchange completes a TLS handshake with the proxy at addr, writes
// data inside TLS, closes its side (close_notify) and reads the decrypted
// reply until the proxy closes. A reset after the proxy's reply is returned
// as the error; a failed handshake fails the test.
func fuzzTLSExchange(t *testing.T, addr string, cfg *tls.Config, data []byte) ([]byte, error) {
	raw, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(testTimeout))
	c := tls.Client(raw, cfg)
	if err := c.Handshake(); err != nil {
		t.Fatalf("TLS handshake with the proxy: %v", err)
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = c.Write(data)
		_ = c.CloseWrite()
	}()
	resp, err := io.ReadAll(c)
	<-wrote
	if err != nil && !isReset(err) {
		t.Fatalf("reading the reply inside TLS: %v (got %q)", err, resp)
	}
	return resp, err
}

// waitReleased waits until srv holds no connection and every tunnel obs
// saw opened was closed: the connection the input used has ended, its
// goroutine with it, and nothing it started is left behind.
func waitReleased(t *testing.T, srv *Server, obs *fuzzObserver) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		srv.mu.Lock()
		open := len(srv.conns)
		srv.mu.Unlock()
		inFlight := obs.opened.Load() - obs.closed.Load()
		if open == 0 && inFlight == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection not released: %d open, %d tunnels in flight", open, inFlight)
		}
		time.Sleep(time.Millisecond)
	}
}

// fuzzObserver counts tunnels opened and closed, and failed TLS handshakes.
type fuzzObserver struct {
	opened, closed, tlsFailed atomic.Int64
}

func (o *fuzzObserver) TunnelOpened(dial.Protocol) { o.opened.Add(1) }

func (o *fuzzObserver) TunnelClosed(r dial.Record) {
	if r.Result == resultTLSFailed {
		o.tlsFailed.Add(1)
	}
	o.closed.Add(1)
}

var _ dial.Observer = (*fuzzObserver)(nil)
