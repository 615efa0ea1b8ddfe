package socks

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// FuzzSOCKS5Handshake feeds arbitrary client bytes after the version byte.
// Invariants: no panic, ServeStream returns within the header deadline, and
// the Dialer is called exactly when the bytes hold a well-formed handshake
// and CONNECT (by the reference parser below), with that target.
func FuzzSOCKS5Handshake(f *testing.F) {
	fuzzHandshake(f, socks5Seeds(f), socks5Version, parseClient5)
}

// FuzzSOCKS4Handshake is FuzzSOCKS5Handshake for SOCKS4 and SOCKS4a.
func FuzzSOCKS4Handshake(f *testing.F) {
	fuzzHandshake(f, socks4Seeds(f), socks4Version, parseClient4)
}

// fuzzHandshake fuzzes the handshake of version from seeds, checking each
// input against parse, the reference parser of that version.
func fuzzHandshake(f *testing.F, seeds []fuzzSeed, version byte, parse func(data []byte, authOn bool) (string, bool)) {
	for _, s := range seeds {
		f.Add(s.data, s.auth)
	}
	f.Fuzz(func(t *testing.T, data []byte, withAuth bool) {
		want, valid := parse(data, withAuth)
		fuzzServe(t, version, data, withAuth, want, valid)
	})
}

type fuzzSeed struct {
	data []byte
	auth bool
}

// socks5Seeds are the handshakes of the table tests, without the version byte.
func socks5Seeds(tb testing.TB) []fuzzSeed {
	tail := func(b []byte) []byte { return b[1:] }
	noAuth := []byte{0x01, 0x00}
	userPass := append([]byte{0x02, 0x00, 0x02, 0x01, byte(len("alice-session-1"))}, "alice-session-1"...)
	userPass = append(append(userPass, byte(len("secret"))), "secret"...)
	var seeds []fuzzSeed
	for _, target := range []string{"127.0.0.1:80", "[::1]:443", "localhost:8080", ":80", "127.0.0.1:0"} {
		seeds = append(seeds,
			fuzzSeed{append(bytes.Clone(noAuth), request5(tb, 0x01, target)...), false},
			fuzzSeed{append(bytes.Clone(userPass), request5(tb, 0x01, target)...), true},
		)
	}
	for _, cmd := range []byte{0x02, 0x03, 0x09} {
		seeds = append(seeds, fuzzSeed{append(bytes.Clone(noAuth), request5(tb, cmd, "127.0.0.1:80")...), false})
	}
	seeds = append(seeds,
		fuzzSeed{tail(request5(tb, 0x01, "127.0.0.1:80")), false},                      // no greeting
		fuzzSeed{[]byte{0x01, 0x00, 0x04, 0x01, 0x00, 0x01}, false},                    // bad request version
		fuzzSeed{[]byte{0x00}, false},                                                  // no methods
		fuzzSeed{[]byte{0x01, 0x00, 0x05, 0x01, 0x00, 0x07, 1, 2, 3, 4, 0, 80}, false}, // bad ATYP
		fuzzSeed{[]byte{0x01, 0x02, 0x01, 0x01, 'a', 0x01, 'b'}, true},                 // wrong credentials
	)
	return seeds
}

// socks4Seeds are the requests of the table tests, without the version byte.
func socks4Seeds(tb testing.TB) []fuzzSeed {
	var seeds []fuzzSeed
	for _, r := range [][]byte{
		encodeRequest4(tb, 0x01, "127.0.0.1:80", "bob-session-7"),
		encodeRequest4(tb, 0x01, "localhost:8080", ""),
		encodeRequest4(tb, 0x02, "127.0.0.1:80", ""),
		encodeRequest4(tb, 0x01, "bad/host:80", ""),
		encodeRequest4(tb, 0x01, "127.0.0.1:0", ""),
		{0x04, 0x01, 0x00, 0x50, 0, 0, 0, 1, 0, 0},
	} {
		seeds = append(seeds, fuzzSeed{r[1:], false}, fuzzSeed{r[1:], true})
	}
	return seeds
}

// fuzzServe runs ServeStream over a net.Pipe with data as the client's bytes
// and a Dialer that records and fails, and checks the invariants.
func fuzzServe(t *testing.T, first byte, data []byte, withAuth bool, want string, valid bool) {
	var mu sync.Mutex
	var dialed []string
	cfg := Config{
		Dialer: dial.DialerFunc(func(_ context.Context, req *dial.Request) (*dial.Outbound, error) {
			mu.Lock()
			dialed = append(dialed, req.Target)
			mu.Unlock()
			return nil, &dial.Error{Target: req.Target, Attempt: 1, Err: dial.ErrTargetRefused}
		}),
		Logger: zap.NewNop(),
	}
	if withAuth {
		cfg.Auth = aliceAuth
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client, server := net.Pipe()
	_ = server.SetDeadline(time.Now().Add(time.Second)) // the listener's header deadline
	done := make(chan struct{})
	go func() {
		defer close(done)
		serveStream(context.Background(), srv, server, first)
		_ = server.Close()
	}()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_, _ = io.Copy(io.Discard, client)
	}()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = client.Write(data)
		if !valid { // a malformed handshake ends at the client's close
			_ = client.Close()
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("ServeStream did not return within the deadline for %q", data)
	}
	_ = client.Close()
	<-drained
	<-wrote

	mu.Lock()
	defer mu.Unlock()
	switch {
	case !valid && len(dialed) > 0:
		t.Fatalf("dialed %q for a malformed handshake %q", dialed, data)
	case valid && (len(dialed) != 1 || dialed[0] != want):
		t.Fatalf("dialed %q, want exactly [%q] for %q", dialed, want, data)
	}
}

// cursor reads a client's bytes for the reference parsers; any short read
// clears ok.
type cursor struct {
	b  []byte
	ok bool
}

func (c *cursor) take(n int) []byte {
	if !c.ok || len(c.b) < n {
		c.ok = false
		return nil
	}
	x := c.b[:n]
	c.b = c.b[n:]
	return x
}

func (c *cursor) byte1() byte {
	if x := c.take(1); x != nil {
		return x[0]
	}
	return 0
}

// parseClient5 is an independent reading of RFC 1928/1929 as this server
// applies them: the target a well-formed SOCKS5 CONNECT asks for, and whether
// the server must dial it.
func parseClient5(data []byte, authOn bool) (string, bool) {
	c := &cursor{b: data, ok: true}
	methods := c.take(int(c.byte1()))
	if !c.ok {
		return "", false
	}
	switch {
	case bytes.IndexByte(methods, 0x02) >= 0:
		ver := c.byte1()
		user := c.take(int(c.byte1()))
		pass := c.take(int(c.byte1()))
		if !c.ok || ver != 0x01 {
			return "", false
		}
		if authOn && (dial.ParseUsername(string(user)).Base != "alice" || string(pass) != "secret") {
			return "", false
		}
	case !authOn && bytes.IndexByte(methods, 0x00) >= 0:
	default:
		return "", false
	}
	hdr := c.take(4)
	if !c.ok || hdr[0] != 0x05 || hdr[1] != 0x01 {
		return "", false
	}
	var host string
	switch hdr[3] {
	case 0x01:
		host = net.IP(c.take(4)).String()
	case 0x04:
		host = net.IP(c.take(16)).String()
	case 0x03:
		host = string(c.take(int(c.byte1())))
	default:
		return "", false
	}
	port := c.take(2)
	if !c.ok {
		return "", false
	}
	p := binary.BigEndian.Uint16(port)
	if !validHost(host) || p == 0 {
		return "", false
	}
	return net.JoinHostPort(host, strconv.Itoa(int(p))), true
}

// parseClient4 is the SOCKS4/4a counterpart of parseClient5.
func parseClient4(data []byte, authOn bool) (string, bool) {
	c := &cursor{b: data, ok: true}
	hdr := c.take(7)
	if !c.ok || hdr[0] != 0x01 || authOn {
		return "", false
	}
	port := binary.BigEndian.Uint16(hdr[1:3])
	host := net.IP(hdr[3:7]).String()
	user := bytes.IndexByte(c.b, 0)
	if user < 0 || user > maxField4 {
		return "", false
	}
	c.take(user + 1)
	if hdr[3] == 0 && hdr[4] == 0 && hdr[5] == 0 && hdr[6] != 0 {
		n := bytes.IndexByte(c.b, 0)
		if n < 0 || n > maxField4 {
			return "", false
		}
		host = string(c.b[:n])
	}
	if !validHost(host) || port == 0 {
		return "", false
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), true
}
