package mitm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// tlsHandshakeRecord is the first byte of a TLS stream (a handshake record
// carrying the ClientHello).
const tlsHandshakeRecord = 0x16

// connIDBase numbers tunnels whose front end gave no ConnID, far above the
// front ends' own counters.
const connIDBase = 1 << 62

// Interceptor terminates the TLS of CONNECT and SOCKS streams with leaves
// from the CA and re-originates every request with a browser identity. It
// is safe for concurrent use; it starts no goroutine of its own outside
// ServeIntercepted, which waits for everything it starts.
type Interceptor struct {
	cfg     Config
	scope   scope
	log     *zap.Logger
	stdlog  *log.Logger
	leaves  *leafCache
	store   *identityStore
	h2      HTTP2Client
	mirrors bool // some identity may take the mirror profile
	tlsCfg  *tls.Config
	conns   atomic.Uint64
	bufs    bufferPool
}

// New validates cfg and returns an Interceptor.
func New(cfg Config) (*Interceptor, error) {
	comp, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ic := &Interceptor{cfg: cfg, scope: comp.scope, log: cfg.Logger}
	if ic.stdlog, err = zap.NewStdLogAt(cfg.Logger.Named("http"), zap.DebugLevel); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if ic.leaves, err = newLeafCache(cfg.CA, cfg.MaxLeaves); err != nil {
		return nil, err
	}
	chooser := comp.profiles
	ic.store = newIdentityStore(&ic.cfg, &chooser)
	ic.mirrors = chooser.mirrors()
	ic.h2 = cfg.HTTP2
	if ic.h2 == nil {
		ic.h2 = newH2Client(cfg.IdleTimeout)
	}
	ic.tlsCfg = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: ic.getCertificate,
	}
	return ic, nil
}

// getCertificate returns the leaf for the ClientHello's SNI, or for the host
// the client named in CONNECT (or SOCKS) when it sent none: a name, or an
// IP address for an IP SAN.
func (ic *Interceptor) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := hello.ServerName
	if name == "" {
		if cc, ok := hello.Conn.(*clientConn); ok {
			name = cc.host
		}
	}
	return ic.leaves.get(name)
}

// Intercept reports whether the stream req describes (a CONNECT or SOCKS
// request, before anything was dialed) is in scope: its host matches
// Config.Hosts and not Config.Skip, and a SOCKS stream goes to port 443.
func (ic *Interceptor) Intercept(req *dial.Request) bool { return ic.scope.interceptable(req) }

// ServeIntercepted serves a stream the front end has already accepted (200
// to CONNECT, success to SOCKS) without dialing anything. early holds bytes
// the client sent after its request that the front end read; req describes
// the client and the target. conn is the raw client connection, which the
// caller closes after ServeIntercepted returns.
//
// A stream that begins with a TLS ClientHello is intercepted: the client
// gets a leaf for its SNI and ALPN h2 or http/1.1, and each request it sends
// goes to the origin through the Dialer with an identity. A stream that
// does not (or stays silent for SniffTimeout) is dialed once and spliced.
// Cancelling ctx ends the stream.
//
// up and down count the bytes read from and written to conn; err is nil
// when the stream ended normally (the client or the origin closed it) and
// says why otherwise. Every request (or spliced stream) is logged here.
func (ic *Interceptor) ServeIntercepted(ctx context.Context, conn net.Conn, early []byte, req *dial.Request) (up, down int64, err error) {
	host, _, err := net.SplitHostPort(req.Target)
	if err != nil {
		return 0, 0, fmt.Errorf("bad target %q: %w", req.Target, err)
	}
	cc := &clientConn{Conn: conn, early: early, host: normalizeHost(host)}
	stop := context.AfterFunc(ctx, cc.kill)
	defer stop()

	first, err := cc.sniff(ic.cfg.SniffTimeout)
	if err != nil && len(cc.early) == 0 {
		if ctx.Err() != nil || !isTimeout(err) {
			up, down := cc.counts()
			return up, down, fmt.Errorf("client closed before sending anything: %w", err)
		}
	}
	if len(cc.early) == 0 || first != tlsHandshakeRecord {
		return ic.passthrough(ctx, cc, req)
	}

	var mirror *mirrorState
	if ic.mirrors {
		// The mirror profile copies this ClientHello: read all of it
		// before the TLS server consumes it.
		hello, err := cc.readClientHello(ic.cfg.HandshakeTimeout)
		if err != nil {
			up, down := cc.counts()
			return up, down, fmt.Errorf("client TLS handshake: reading the ClientHello: %w", err)
		}
		mirror = &mirrorState{hello: hello}
	}
	tc := tls.Server(cc, ic.tlsCfg)
	hctx, cancel := context.WithTimeout(ctx, ic.cfg.HandshakeTimeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		up, down := cc.counts()
		return up, down, fmt.Errorf("client TLS handshake: %w", err)
	}
	st := tc.ConnectionState()
	s := ic.newSession(req, st.ServerName, cc.host)
	defer s.close()
	var served net.Conn = tc
	if mirror != nil {
		served = mirror.tee(tc, st.NegotiatedProtocol == "h2")
		s.mirror = mirror
	}
	ic.serveClient(ctx, served, s)
	s.handlers.closeAndWait()
	up, down = cc.counts()
	return up, down, nil
}

// newSession starts the state of one intercepted tunnel.
func (ic *Interceptor) newSession(req *dial.Request, sni, connectHost string) *session {
	host := connectHost
	if sni != "" {
		host = normalizeHost(sni)
	}
	s := &session{
		ic:     ic,
		base:   dial.Request{Client: req.Client, User: req.User, Session: req.Session, Country: req.Country, Guard: req.Guard},
		target: req.Target,
		host:   host,
		site:   siteOf(host),
		connID: req.ConnID,
	}
	if s.connID == 0 {
		s.connID = connIDBase + ic.conns.Add(1)
	}
	return s
}

// ResetUpstream rotates every identity that upstream (a label as in
// dial.Outbound.Upstream) holds; call it when the upstream comes back from
// quarantine. It returns how many identities it rotated.
func (ic *Interceptor) ResetUpstream(upstream string) int { return ic.store.resetUpstream(upstream) }

// Stats is a point-in-time view of an Interceptor's caches.
type Stats struct {
	LeavesMinted uint64 // leaf certificates signed since New
	Leaves       int    // leaves cached now
	Identities   int    // (upstream, site) pairs held now
}

// Stats reads the counters.
func (ic *Interceptor) Stats() Stats {
	return Stats{LeavesMinted: ic.leaves.mints.Load(), Leaves: ic.leaves.cache.len(), Identities: ic.store.pairs.len()}
}

// Identity returns the current identity of (upstream, the site of host), or
// nil if there is none yet.
func (ic *Interceptor) Identity(upstream, host string) *Identity {
	return ic.store.current(upstream, siteOf(host))
}

// CA is the CA the Interceptor signs leaves with.
func (ic *Interceptor) CA() *CA { return ic.cfg.CA }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
