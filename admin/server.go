package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

var (
	// ErrInvalidConfig is wrapped by Config.Validate's errors.
	ErrInvalidConfig = errors.New("invalid admin config")
	// ErrOpenAdmin: Serve was given a listener beyond loopback while
	// Config.Auth is nil.
	ErrOpenAdmin = errors.New("admin server beyond loopback needs authentication")
)

// Config configures a Server.
type Config struct {
	// Metrics feeds /metrics and the status API; it is the dial.Observer the
	// proxy's front ends report to. Required.
	Metrics *Metrics
	// ProxyAddr is the host:port the proxy listens on, which /proxy.pac
	// names. "" serves 404 there.
	ProxyAddr string
	// Serving reports whether the proxy's listener accepts connections
	// (ServingListener.Serving); /healthz fails while it returns an error.
	// Nil means it always does.
	Serving func() error
	// Auth checks HTTP Basic credentials against the proxy's accounts on a
	// listener beyond loopback, for every path but /healthz, /proxy.pac and
	// /ca.pem (which monitors and browsers fetch without credentials and
	// which reveal nothing secret). Serve refuses such a listener when Auth
	// is nil. On loopback no credentials are asked.
	Auth dial.Authenticator
	// CAPEM returns the MITM CA certificate in PEM for /ca.pem, or nil
	// while there is none. Nil serves 404 there.
	CAPEM func() []byte
	// Logger receives serving errors and refused logins (never
	// passwords). Nil logs nothing.
	Logger *zap.Logger
}

// Validate reports a missing Metrics or an unparsable ProxyAddr.
func (c Config) Validate() error {
	if c.Metrics == nil {
		return fmt.Errorf("%w: Metrics is required", ErrInvalidConfig)
	}
	if c.ProxyAddr != "" {
		if _, _, err := net.SplitHostPort(c.ProxyAddr); err != nil {
			return fmt.Errorf("%w: ProxyAddr %q: %w", ErrInvalidConfig, c.ProxyAddr, err)
		}
	}
	return nil
}

// Server is the admin HTTP server: /metrics, /healthz, /api/upstreams,
// /api/stats, the status page at /, /proxy.pac and /ca.pem. Create it with
// New, run it with Serve, stop it with Shutdown or by cancelling Serve's
// context.
type Server struct {
	cfg     Config
	log     *zap.Logger
	mux     *http.ServeMux
	authed  http.Handler
	mu      sync.Mutex
	servers map[*http.Server]struct{}
	closed  bool
}

// New validates cfg and builds the Server's routes; it starts nothing.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, servers: make(map[*http.Server]struct{})}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", servePage)
	m.Handle("GET /static/", staticHandler())
	m.Handle("GET /metrics", promhttp.HandlerFor(cfg.Metrics.reg, promhttp.HandlerOpts{
		ErrorLog:      zap.NewStdLog(s.log),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	m.HandleFunc("GET /healthz", s.serveHealth)
	m.HandleFunc("GET /api/upstreams", s.serveUpstreams)
	m.HandleFunc("GET /api/stats", s.serveStats)
	m.HandleFunc("GET /proxy.pac", s.servePAC)
	m.HandleFunc("GET /ca.pem", s.serveCA)
	s.mux = m
	s.authed = s.requireAuth(m)
	return s, nil
}

// Handler serves every route without asking for credentials, for embedding
// behind something that authenticates.
func (s *Server) Handler() http.Handler { return withHeaders(s.mux) }

// Serve serves ln until ctx ends or Shutdown is called, then returns nil
// (ctx ending closes open connections at once). A listener beyond loopback
// asks for credentials (Config.Auth) and is refused, with ErrOpenAdmin, when
// there is no Auth. Serve closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var h http.Handler = s.mux
	if !isLoopback(ln.Addr()) {
		if s.cfg.Auth == nil {
			_ = ln.Close()
			return fmt.Errorf("%w: %s", ErrOpenAdmin, ln.Addr())
		}
		h = s.authed
	}
	hs := &http.Server{
		Handler:           withHeaders(h),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(s.log),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.servers[hs] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.servers, hs)
		s.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, func() { _ = hs.Close() })
	defer stop()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting, lets requests in progress finish until ctx is
// done, and returns ctx's error if it had to give up.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	servers := make([]*http.Server, 0, len(s.servers))
	for hs := range s.servers {
		servers = append(servers, hs)
	}
	s.mu.Unlock()
	var errs []error
	for _, hs := range servers {
		errs = append(errs, hs.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// Endpoint is one URL the Server answers on.
type Endpoint struct {
	Name string
	URL  string
}

// Endpoints lists the Server's URLs on addr (its listener's address), for
// printing at start; /proxy.pac and /ca.pem only when configured.
func (s *Server) Endpoints(addr net.Addr) []Endpoint {
	base := "http://" + addr.String()
	out := []Endpoint{
		{"status page", base + "/"},
		{"metrics", base + "/metrics"},
		{"health", base + "/healthz"},
		{"upstreams", base + "/api/upstreams"},
		{"stats", base + "/api/stats"},
	}
	if s.cfg.ProxyAddr != "" {
		out = append(out, Endpoint{"proxy auto-config", base + "/proxy.pac"})
	}
	if s.cfg.CAPEM != nil {
		out = append(out, Endpoint{"CA certificate", base + "/ca.pem"})
	}
	return out
}

// openPath reports the paths served without credentials even beyond
// loopback.
func openPath(p string) bool { return p == "/healthz" || p == "/proxy.pac" || p == "/ca.pem" }

// requireAuth asks for HTTP Basic credentials that Config.Auth accepts.
// The username may carry session controls; only its base is checked.
func (s *Server) requireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if openPath(r.URL.Path) || s.cfg.Auth == nil {
			next.ServeHTTP(w, r)
			return
		}
		if user, pass, ok := r.BasicAuth(); ok {
			_, err := s.cfg.Auth.Authenticate(r.Context(), remoteAddr(r), dial.ParseUsername(user).Base, pass)
			if err == nil {
				next.ServeHTTP(w, r)
				return
			}
			s.cfg.Metrics.adminAuthFailed()
			s.log.Info("admin login refused", zap.String("client", r.RemoteAddr), zap.Error(err))
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="hopper admin", charset="UTF-8"`)
		http.Error(w, "The admin server needs a proxy account (HTTP Basic).", http.StatusUnauthorized)
	})
}

// withHeaders adds the headers every admin response carries.
func withHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

func remoteAddr(r *http.Request) net.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}

// isLoopback reports an address bound to loopback only.
func isLoopback(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true // reachable only through the file system
	}
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}
