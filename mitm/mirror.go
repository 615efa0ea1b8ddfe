package mitm

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	utls "github.com/refraction-networking/utls"

	"github.com/hopper-proxy/hopper/fingerprint"
)

// ErrMirror is wrapped when the mirror profile cannot copy a client's
// ClientHello (uTLS cannot rebuild it); the client gets 502 naming why.
var ErrMirror = errors.New("cannot mirror the client's ClientHello")

// mirrorState is what hopper keeps of one client tunnel's own fingerprint
// for identities with the mirror profile: the ClientHello it sent hopper,
// and a capture of its requests (the HTTP/2 preface, each request's header
// order and priority).
type mirrorState struct {
	hello []byte // the ClientHello as one TLS record
	h1    *fingerprint.HTTP1Capture
	h2    *fingerprint.HTTP2Capture

	mu      sync.Mutex
	profile *Profile // built once the HTTP/2 preface is complete
}

// tee returns conn (the client's TLS connection, negotiated proto) with a
// capture of what it reads.
func (m *mirrorState) tee(conn net.Conn, h2 bool) net.Conn {
	if h2 {
		m.h2 = fingerprint.NewHTTP2Capture()
		return fingerprint.Tee(conn, m.h2)
	}
	m.h1 = fingerprint.NewHTTP1Capture()
	return fingerprint.Tee(conn, m.h1)
}

// claim returns the head of the client's request r as it arrived, if the
// capture has it.
func (m *mirrorState) claim(r *http.Request) *fingerprint.RequestHead {
	var (
		head fingerprint.RequestHead
		ok   bool
	)
	switch {
	case m.h2 != nil:
		head, ok = m.h2.Claim(r)
	case m.h1 != nil:
		head, ok = m.h1.Claim(r)
	}
	if !ok {
		return nil
	}
	return &head
}

// profileOf returns the tunnel's own profile: its ClientHello and, over
// HTTP/2, its preface. A client speaking HTTP/1.1 to hopper has no preface
// to copy; an origin choosing HTTP/2 for it gets an empty SETTINGS frame.
func (m *mirrorState) profileOf() (*Profile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.profile != nil {
		return m.profile, nil
	}
	if _, err := mirrorSpec(m.hello); err != nil {
		return nil, err
	}
	hello := m.hello
	p := &Profile{
		Name:      ProfileMirror,
		Browser:   "the client's own",
		HelloSpec: func() (*utls.ClientHelloSpec, error) { return mirrorSpec(hello) },
		mirror:    true,
	}
	complete := m.h2 == nil
	if m.h2 != nil {
		p.HTTP2, complete = m.h2.Preface()
	}
	if complete {
		m.profile = p
	}
	return p, nil
}

// mirrorSpec rebuilds a ClientHelloSpec from a client's ClientHello record
// with uTLS's Fingerprinter (unknown extensions copied as they are). A
// pre_shared_key (resumption of a session with hopper, meaningless to the
// origin) and early_data are left out: the origin sees the client's
// first-visit ClientHello.
func mirrorSpec(record []byte) (*utls.ClientHelloSpec, error) {
	f := &utls.Fingerprinter{AllowBluntMimicry: true}
	spec, err := f.RawClientHello(record)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMirror, err)
	}
	kept := spec.Extensions[:0]
	for _, e := range spec.Extensions {
		switch e := e.(type) {
		case *utls.FakePreSharedKeyExtension, *utls.UtlsPreSharedKeyExtension:
			continue
		case *utls.GenericExtension:
			if e.Id == fingerprint.ExtEarlyData || e.Id == fingerprint.ExtPreSharedKey {
				continue
			}
		}
		kept = append(kept, e)
	}
	spec.Extensions = kept
	return spec, nil
}

// readClientHello makes sure the client's whole ClientHello is buffered in
// early (reading for up to timeout) and returns it as one TLS record, for
// the mirror profile. Nothing is consumed: the TLS server reads it next.
func (c *clientConn) readClientHello(timeout time.Duration) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	for {
		msg, version, _, err := fingerprint.ExtractClientHello(c.early)
		if err == nil {
			record := make([]byte, 0, 5+len(msg))
			record = append(record, 0x16, byte(version>>8), byte(version), byte(len(msg)>>8), byte(len(msg)))
			return append(record, msg...), nil
		}
		if !errors.Is(err, fingerprint.ErrIncomplete) {
			return nil, err
		}
		if len(c.early) > fingerprint.MaxClientHello+1024 {
			return nil, fingerprint.ErrTooLarge
		}
		_ = c.Conn.SetReadDeadline(deadline)
		buf := make([]byte, 4096)
		n, rerr := c.Conn.Read(buf)
		if !c.killed.Load() {
			_ = c.Conn.SetReadDeadline(time.Time{})
		}
		c.early = append(c.early, buf[:n]...)
		c.addRead(n)
		if rerr != nil && n == 0 {
			return nil, rerr
		}
	}
}
