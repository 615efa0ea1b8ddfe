package mitm

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// reqInfo collects one intercepted request's access-log line.
type reqInfo struct {
	start    time.Time
	upstream string
	attempts int
	identity *Identity
	err      error
	result   string
}

func (i *reqInfo) noteDialErr(err error) {
	var de *dial.Error
	if errors.As(err, &de) {
		i.upstream = de.Upstream
		i.attempts += max(de.Attempt, len(de.Attempts))
	}
}

type infoKey struct{}

// infoFrom returns the request's reqInfo, or a throwaway one.
func infoFrom(ctx context.Context) *reqInfo {
	if i, ok := ctx.Value(infoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{}
}

// handler serves the requests of one intercepted tunnel: a reverse proxy
// whose transport is the session, plus the access log.
func (s *session) handler() http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			host := pr.In.Host
			if host == "" {
				host = s.target
			}
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = host
			pr.Out.Host = host
		},
		Transport:     s,
		FlushInterval: -1, // stream: every read from the origin goes on at once
		ErrorHandler:  s.serveError,
		ErrorLog:      s.ic.stdlog,
		BufferPool:    &s.ic.bufs,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.handlers.enter() {
			// The connection is over: a straggler the server started
			// just before it noticed.
			panic(http.ErrAbortHandler)
		}
		defer s.handlers.leave()
		if r.ProtoMajor == 1 {
			// Answer while the request body is still arriving, as HTTP/2
			// does: without this, Go's HTTP/1.1 server reads the rest of an
			// unread body before writing an origin's early answer (413,
			// 401), waiting on a client that waits for that answer.
			_ = http.NewResponseController(w).EnableFullDuplex()
		}
		info := &reqInfo{start: time.Now()}
		cw := &countingWriter{ResponseWriter: w}
		var body *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
		defer func() {
			p := recover()
			if p != nil && info.result == "" {
				info.result = resultInterrupted
			}
			s.logRequest(r, info, cw, body)
			s.report(info, cw)
			if p != nil {
				panic(p)
			}
		}()
		ctx := context.WithValue(r.Context(), infoKey{}, info)
		if s.mirror != nil {
			if head := s.mirror.claim(r); head != nil {
				ctx = withClientHead(ctx, head)
			}
		}
		rp.ServeHTTP(cw, r.WithContext(ctx))
	})
}

// Access-log results besides "ok" and the dial.Kind strings.
const (
	resultOK           = "ok"
	resultInterrupted  = "interrupted"
	resultClientClosed = "client-closed"
	resultCertificate  = "origin-certificate"
	resultOriginTLS    = "origin-tls"
	resultCooling      = "cooling-down"
)

func (s *session) logRequest(r *http.Request, info *reqInfo, cw *countingWriter, body *countingBody) {
	ce := s.ic.log.Check(zap.InfoLevel, "tunnel")
	if ce == nil {
		return
	}
	result := info.result
	if result == "" {
		result = resultOK
	}
	client := ""
	if s.base.Client != nil {
		client = s.base.Client.String()
	}
	var up int64
	if body != nil {
		up = body.n.Load()
	}
	fields := make([]zap.Field, 0, 16)
	fields = append(fields,
		zap.String("client", client),
		zap.String("user", s.base.User),
		zap.String("proto", dial.ProtocolMITM.String()),
		zap.String("target", s.target),
		zap.String("upstream", info.upstream),
		zap.Int("attempts", info.attempts),
		zap.Int64("up", up),
		zap.Int64("down", cw.n),
		zap.Duration("duration", time.Since(info.start)),
		zap.String("result", result),
		zap.Int("status", cw.status),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
	)
	if info.identity != nil {
		fields = append(fields, zap.String("profile", info.identity.Profile.Name), zap.Uint64("identity", info.identity.serial))
	}
	if info.err != nil {
		fields = append(fields, zap.String("error", info.err.Error()))
	}
	ce.Write(fields...)
}

// report tells the Observer about the request.
func (s *session) report(info *reqInfo, cw *countingWriter) {
	profile, result := "", info.result
	if info.identity != nil {
		profile = info.identity.Profile.Name
	}
	if result == "" {
		result = resultOK
	}
	s.ic.cfg.Observer.InterceptedRequest(profile, cw.status, result, time.Since(info.start))
}

// serveError answers a request that got no response from the origin, per
// DESIGN.md's error table, plus the MITM cases: an origin certificate that
// does not verify or a failed origin handshake is a 502 naming the reason;
// every upstream cooling down for the site is a 503 with Retry-After.
func (s *session) serveError(w http.ResponseWriter, r *http.Request, err error) {
	info := infoFrom(r.Context())
	info.err = err
	status, hopperErr, msg := 502, "upstream-failed", ""
	var cooling *errCoolingDown
	switch kind := dial.Classify(err); {
	case r.Context().Err() != nil:
		info.result = resultClientClosed
		return
	case errors.As(err, &cooling):
		info.result = resultCooling
		status, hopperErr = 503, "no-upstream"
		secs := max(int(math.Ceil(cooling.until.Sub(s.ic.store.now()).Seconds())), 1)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		msg = "every upstream is cooling down for " + cooling.site + " after 429 answers; retry after " + strconv.Itoa(secs) + "s"
	case kind == dial.KindTimeout:
		info.result = kind.String()
		status, hopperErr = 504, "timeout"
		msg = "timed out reaching " + s.target
	case errors.Is(err, ErrOriginCertificate):
		info.result = resultCertificate
		msg = "origin certificate for " + s.host + " is not valid: " + rootCause(err).Error()
	case errors.Is(err, ErrOriginTLS):
		info.result = resultOriginTLS
		msg = "TLS handshake with " + s.host + " failed: " + rootCause(err).Error()
	case kind == dial.KindDenied:
		info.result = kind.String()
		status, hopperErr = 403, ""
		msg = "access to " + s.target + " is denied by policy"
	case kind == dial.KindNoUpstream:
		info.result = kind.String()
		status, hopperErr = 503, "no-upstream"
		msg = "no upstream available for " + s.target + "; check the upstream list and its health"
	case errors.Is(err, errNoResponse):
		info.result = kind.String()
		msg = "no response from " + s.target + ": " + rootCause(err).Error()
	default:
		info.result = kind.String()
		msg = "could not reach " + s.target + ": " + rootCause(err).Error()
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if hopperErr != "" {
		h.Set("Hopper-Error", hopperErr)
	}
	body := "hopper: " + msg + "\n"
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, body)
	}
}

// rootCause is dial.RootCause with this package's sentinels.
func rootCause(err error) error { return dial.RootCause(err, isSentinel) }

func isSentinel(err error) bool {
	for _, s := range [...]error{ErrOriginCertificate, ErrOriginTLS, errNoResponse, dial.ErrNoUpstream,
		dial.ErrDenied, dial.ErrTargetRefused, dial.ErrTargetUnreachable, dial.ErrTimeout, dial.ErrUpstream} {
		if err == s {
			return true
		}
	}
	return false
}

// countingWriter counts the body bytes sent to the client and records the
// final status. A response the origin sent without Content-Type or Date
// goes without them too (net/http would sniff and add them).
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
}

func (w *countingWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.status = code
		h := w.Header()
		for _, k := range [...]string{"Content-Type", "Date"} {
			if _, ok := h[k]; !ok {
				h[k] = nil
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts the request body bytes read from the client.
// countingBody counts a request body's bytes. Atomic: an HTTP/1.1 origin's
// body writer may still be reading it when the request is logged.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// bufferPool lends the reverse proxies their copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// handlerSet counts a session's handlers in flight, so ServeIntercepted can
// wait for every one it let start. The HTTP servers start handlers on
// goroutines of their own; one that begins after closeAndWait does nothing.
type handlerSet struct {
	mu     sync.Mutex
	n      int
	closed bool
	zero   chan struct{} // closed when n drops to 0 after closeAndWait
}

func (h *handlerSet) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.n++
	return true
}

func (h *handlerSet) leave() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n--
	if h.n == 0 && h.zero != nil {
		close(h.zero)
		h.zero = nil
	}
}

// closeAndWait lets no new handler start and waits for those running.
func (h *handlerSet) closeAndWait() {
	h.mu.Lock()
	h.closed = true
	if h.n == 0 {
		h.mu.Unlock()
		return
	}
	zero := make(chan struct{})
	h.zero = zero
	h.mu.Unlock()
	<-zero
}
