package mitm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// maxCoolingRedials bounds how often one request dials again after the pool
// chose an upstream that is cooling down for the site.
const maxCoolingRedials = 3

// errCoolingDown wraps dial.ErrNoUpstream: every upstream the pool offered
// is cooling down for the site after a 429.
type errCoolingDown struct {
	site  string
	until time.Time
}

func (e *errCoolingDown) Error() string {
	return fmt.Sprintf("every upstream offered is cooling down for %s after 429 answers", e.site)
}

func (e *errCoolingDown) Unwrap() error { return dial.ErrNoUpstream }

// errSessionClosed: a request raced the end of its tunnel.
var errSessionClosed = errors.New("intercepted tunnel closed")

// session is one intercepted client tunnel. It is the http.RoundTripper the
// tunnel's reverse proxy uses: every request is sent through an origin
// connection it dials through the Dialer (one dial.Request per request, or
// per RequestsPerDial requests) and handshakes with the identity of the
// (upstream, site) pair the dial landed on.
type session struct {
	ic       *Interceptor
	base     dial.Request // the client's: Client, User, Session, Country
	target   string       // host:port the client asked for, dialed for every request
	host     string       // origin name: SNI, certificate check, identity site
	site     string
	connID   uint64
	seq      atomic.Int64
	handlers handlerSet
	mirror   *mirrorState // the client's own fingerprint; nil unless some identity mirrors

	mu     sync.Mutex
	conns  []*originEntry
	closed bool
}

// originEntry is one origin connection of a session.
type originEntry struct {
	conn     OriginConn
	out      *dial.Outbound
	id       *Identity
	profile  *Profile // id's profile, or for the mirror profile the client's own
	slot     int64
	proto    string
	inflight int // guarded by session.mu
	dropped  bool
}

func (e *originEntry) close() {
	_ = e.conn.Close()
	e.out.Done(false)
}

var _ http.RoundTripper = (*session)(nil)

// slotOf maps a request's sequence number to the dial it shares.
func (s *session) slotOf(seq int64) int64 {
	per := s.ic.cfg.RequestsPerDial
	if per < 0 {
		return 0
	}
	return seq / int64(per)
}

// RoundTrip sends req, which httputil.ReverseProxy prepared, to the origin
// with an identity. It never changes req.
func (s *session) RoundTrip(req *http.Request) (*http.Response, error) {
	info := infoFrom(req.Context())
	seq := s.seq.Add(1) - 1
	slot := s.slotOf(seq)
	upgrade := req.Header.Get("Upgrade") != ""
	clientAE := strings.Join(req.Header.Values("Accept-Encoding"), ",")
	for attempt := 0; ; attempt++ {
		e := s.reuse(slot, upgrade)
		reused := e != nil
		if !reused {
			var err error
			if e, err = s.dial(req.Context(), seq, slot, upgrade, info); err != nil {
				return nil, err
			}
		}
		info.upstream, info.identity = e.out.Upstream, e.id
		out := s.prepare(req, e)
		resp, err := e.conn.RoundTrip(out)
		if err != nil {
			s.release(e, false)
			// A kept connection the origin closed meanwhile, or a stream
			// the origin refused unprocessed (GOAWAY, REFUSED_STREAM): try
			// once more on a new connection when the request can be sent
			// again.
			if (reused || errors.Is(err, errH2Retryable)) && attempt == 0 && req.Body == nil && req.Context().Err() == nil {
				continue
			}
			return nil, fmt.Errorf("%w %s: %w", errNoResponse, s.target, err)
		}
		s.observe(e, out, resp)
		if resp.StatusCode == http.StatusSwitchingProtocols {
			rwc, ok := resp.Body.(io.ReadWriteCloser)
			if !ok {
				_ = resp.Body.Close()
				s.release(e, false)
				return nil, fmt.Errorf("%w %s: 101 without an upgradable connection", errNoResponse, s.target)
			}
			resp.Body = &releasingRWC{ReadWriteCloser: rwc, release: func() { s.release(e, false) }}
			return resp, nil
		}
		decodeForClient(resp, clientAE)
		resp.Body = &releasingBody{rc: resp.Body, release: func(ok bool) { s.release(e, ok) }}
		return resp, nil
	}
}

// errNoResponse wraps an origin failing before its response head.
var errNoResponse = errors.New("no response from")

// prepare copies req with the identity's headers and cookies, for the
// origin connection e.
func (s *session) prepare(req *http.Request, e *originEntry) *http.Request {
	id := e.id
	out := req.Clone(req.Context())
	out.URL.Scheme = "https"
	clientCookies := out.Header.Values("Cookie")
	out.Header.Del("Cookie")
	applyProfile(out.Header, e.profile, out.Method, e.proto == "h2")
	var parts []string
	for _, c := range id.jar.Cookies(s.cookieURL(out)) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	if s.ic.cfg.PassClientCookies {
		parts = append(parts, clientCookies...)
	}
	if len(parts) > 0 {
		out.Header.Set("Cookie", strings.Join(parts, "; "))
	}
	return out
}

// cookieURL is the URL cookies of req are scoped by.
func (s *session) cookieURL(req *http.Request) *url.URL {
	host := req.Host
	if host == "" {
		host = s.host
	}
	return &url.URL{Scheme: "https", Host: host, Path: req.URL.Path}
}

// observe stores the response's cookies in the identity's jar and counts its
// ban signals.
func (s *session) observe(e *originEntry, req *http.Request, resp *http.Response) {
	changed := false
	if cs := resp.Cookies(); len(cs) > 0 {
		changed = e.id.jar.set(s.cookieURL(req), cs)
	}
	err := s.ic.store.observe(req.Context(), e.id, resp.StatusCode, resp.Header.Get("Retry-After"), changed)
	if err != nil {
		s.ic.log.Warn("identity rotated after repeated 403s",
			zap.String("upstream", e.id.Upstream), zap.String("site", e.id.Site), zap.Error(err))
		if s.ic.cfg.OnBan != nil {
			s.ic.cfg.OnBan(e.id.Upstream, e.id.Site, err)
		}
	}
}

// reuse returns a live connection of slot that may take a request now,
// with one more request counted for its identity, or nil. Upgrades always
// get a connection of their own. Idle connections of earlier slots close.
func (s *session) reuse(slot int64, upgrade bool) *originEntry {
	s.mu.Lock()
	var stale []*originEntry
	var found *originEntry
	kept := s.conns[:0]
	for _, e := range s.conns {
		if e.slot != slot && e.inflight == 0 {
			stale = append(stale, e)
			continue
		}
		kept = append(kept, e)
		if found != nil || upgrade || e.slot != slot || e.id.Retired() || !e.conn.CanTakeRequest() {
			continue
		}
		if e.proto != "h2" && e.inflight > 0 {
			continue
		}
		if !s.ic.store.use(e.id) {
			continue
		}
		e.inflight++
		found = e
	}
	clear(s.conns[len(kept):])
	s.conns = kept
	s.mu.Unlock()
	for _, e := range stale {
		e.close()
	}
	return found
}

// dial opens a new origin connection for request seq: a dial through the
// Dialer (again, letting the pool choose freely, while it lands on an
// upstream cooling down for the site), the identity of the pair it landed
// on, and the origin TLS handshake with that identity's ClientHello.
func (s *session) dial(ctx context.Context, seq, slot int64, upgrade bool, info *reqInfo) (*originEntry, error) {
	cfg := &s.ic.cfg
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	connID := s.connID
	var out *dial.Outbound
	for try := 0; ; try++ {
		r := s.base
		r.Target, r.Protocol, r.ConnID, r.Seq = s.target, dial.ProtocolMITM, connID, int(seq)
		var err error
		out, err = cfg.Dialer.Dial(dctx, &r)
		if err == nil && (out == nil || out.Conn == nil) {
			err = fmt.Errorf("%w: dialer returned no connection", dial.ErrUpstream)
		}
		if err != nil {
			info.noteDialErr(err)
			if errors.Is(dctx.Err(), context.DeadlineExceeded) && dial.Classify(err) != dial.KindTimeout {
				err = fmt.Errorf("%w: %w", dial.ErrTimeout, err)
			}
			return nil, err
		}
		info.attempts += len(out.Attempts)
		until := s.ic.store.coolingUntil(out.Upstream, s.site)
		if !until.After(s.ic.store.now()) {
			break
		}
		info.upstream = out.Upstream
		out.Done(false)
		if try >= maxCoolingRedials {
			return nil, &errCoolingDown{site: s.site, until: until}
		}
		connID = 0 // per-connection affinity would land on it again
	}
	id := s.ic.store.acquire(dctx, out.Upstream, s.site, s.host)
	prof := id.Profile
	if prof.mirror {
		var err error
		if prof, err = s.mirrorProfile(); err != nil {
			out.Done(false)
			info.upstream = out.Upstream
			return nil, err
		}
	}
	uc, err := s.ic.originTLS(dctx, out.Conn, prof, s.host, upgrade)
	if err != nil {
		out.Done(false)
		info.upstream = out.Upstream
		return nil, err
	}
	e := &originEntry{out: out, id: id, profile: prof, slot: slot, inflight: 1, proto: uc.ConnectionState().NegotiatedProtocol}
	if e.proto == "h2" {
		if e.conn, err = s.ic.h2.NewConn(uc, prof); err != nil {
			_ = uc.Close()
			out.Done(false)
			return nil, fmt.Errorf("%w: starting HTTP/2: %w", ErrOriginTLS, err)
		}
	} else {
		e.conn = newH1Conn(uc, cfg.IdleTimeout, prof)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		e.close()
		return nil, errSessionClosed
	}
	s.conns = append(s.conns, e)
	s.mu.Unlock()
	return e, nil
}

// mirrorProfile is the tunnel's own profile, for identities with the
// mirror profile: the client's ClientHello and HTTP/2 preface.
func (s *session) mirrorProfile() (*Profile, error) {
	if s.mirror == nil {
		return nil, fmt.Errorf("%w: the client's ClientHello was not kept", ErrMirror)
	}
	p, err := s.mirror.profileOf()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOriginTLS, err)
	}
	return p, nil
}

// release ends one request on e. The connection closes when nothing else
// runs on it and it may not serve another request: the response did not end
// cleanly, the tunnel ended, its identity was rotated, the next request
// belongs to another dial (always, with per-request rotation), or the
// connection cannot take more.
func (s *session) release(e *originEntry, ok bool) {
	s.mu.Lock()
	e.inflight--
	drop := e.inflight == 0 && !e.dropped &&
		(!ok || s.closed || e.id.Retired() || s.ic.cfg.RequestsPerDial == 1 ||
			e.slot != s.slotOf(s.seq.Load()-1) || !e.conn.CanTakeRequest())
	if drop {
		e.dropped = true
		for i, c := range s.conns {
			if c == e {
				s.conns = append(s.conns[:i], s.conns[i+1:]...)
				break
			}
		}
	}
	s.mu.Unlock()
	if drop {
		e.close()
	}
}

// close ends the session: idle connections close now, busy ones when their
// request ends.
func (s *session) close() {
	s.mu.Lock()
	s.closed = true
	var idle []*originEntry
	kept := s.conns[:0]
	for _, e := range s.conns {
		if e.inflight == 0 {
			e.dropped = true
			idle = append(idle, e)
		} else {
			kept = append(kept, e)
		}
	}
	s.conns = kept
	s.mu.Unlock()
	for _, e := range idle {
		e.close()
	}
}

// releasingBody calls release once, when the body reaches EOF (ok) or is
// closed (ok only if it had reached EOF).
type releasingBody struct {
	rc      io.ReadCloser
	release func(ok bool)
	once    sync.Once
	n       int64
	eof     bool
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *releasingBody) Close() error {
	err := b.rc.Close()
	b.once.Do(func() { b.release(b.eof) })
	return err
}

// releasingRWC is an upgraded origin connection that releases its entry when
// closed.
type releasingRWC struct {
	io.ReadWriteCloser
	release func()
	once    sync.Once
}

func (r *releasingRWC) Close() error {
	err := r.ReadWriteCloser.Close()
	r.once.Do(r.release)
	return err
}
