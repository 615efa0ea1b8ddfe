package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/hopper-proxy/hopper/auth"
	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/rotate"
	"github.com/hopper-proxy/hopper/socks"
	"github.com/hopper-proxy/hopper/tunnel"
)

// serve runs `hopper serve` until ctx is cancelled (SIGINT/SIGTERM), then
// drains live tunnels for --drain-timeout and returns nil.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseServe(args, stdout)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return usagef("--log-level: %w", err)
	}
	defer func() { _ = log.Sync() }()
	if path := os.Getenv("HOPPER_CPUPROFILE"); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			return fmt.Errorf("HOPPER_CPUPROFILE: %w", err)
		}
		defer stop()
		log.Info("writing CPU profile", zap.String("path", path))
	}
	ca, err := loadServeCA(cfg) // before anything starts: --mitm without a CA is a setup error
	if err != nil {
		return err
	}
	proxyCert, err := loadProxyCert(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return err
	}

	accounts, err := auth.New(auth.Config{Static: cfg.Auth, UsersFile: cfg.Users, Logger: log})
	if err != nil {
		return usagef("%w", err)
	}
	var authn dial.Authenticator
	if accounts.Enabled() {
		authn = accounts
	} else if !cfg.AllowOpen && !isLoopbackListen(cfg.Listen) {
		return usagef("refusing to run an open proxy on %s: add --auth user:pass or --users FILE, or --allow-open if you mean it", cfg.Listen)
	}

	egress, err := newEgress(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer egress.Close()
	dialer, err := auth.NewACL(egress.dialer, auth.ACLConfig{Accounts: cfg.ACL, AllowPrivate: cfg.AllowPrivate})
	if err != nil {
		return usagef("acl: %w", err)
	}
	reload := egress.reload
	egress.reload = func(ctx context.Context) error {
		usersErr := accounts.Reload()
		if usersErr != nil {
			log.Warn("users reload failed; keeping the previous accounts", zap.Error(usersErr))
		}
		var certErr error
		if proxyCert != nil {
			if certErr = proxyCert.reload(); certErr != nil {
				log.Warn("--tls-cert reload failed; keeping the previous certificate", zap.Error(certErr))
			}
		}
		return errors.Join(usersErr, certErr, reload(ctx))
	}
	metrics := newMetrics(cfg, egress)
	countReloads(metrics, egress)
	ic, err := newInterceptor(ctx, cfg, ca, dialer, egress, metrics, log)
	if err != nil {
		return err
	}

	socksSrv, err := socks.New(socks.Config{
		Dialer:         dialer,
		Auth:           authn,
		IdleTimeout:    cfg.IdleTimeout,
		ConnectTimeout: cfg.ConnectTimeout,
		Logger:         log,
		Observer:       observerOf(metrics),
		Interceptor:    socksInterceptor(ic, dialer.Check),
	})
	if err != nil {
		return err
	}
	maxConns := cfg.MaxConns
	if maxConns == 0 {
		maxConns = math.MaxInt32
	}
	perClient := cfg.MaxConnsPerClient
	if perClient == 0 {
		perClient = math.MaxInt32
	}
	tcfg := tunnel.Config{
		Dialer:         dialer,
		Auth:           authn,
		SOCKS:          socksSrv,
		Interceptor:    tunnelInterceptor(ic, dialer.Check),
		Logger:         log,
		HeaderTimeout:  cfg.HeaderTimeout,
		IdleTimeout:    cfg.IdleTimeout,
		ConnectTimeout: cfg.ConnectTimeout,
		MaxConns:       maxConns,
		Observer:       observerOf(metrics),

		MaxConnsPerClient:     perClient,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
	}
	if proxyCert != nil {
		tcfg.TLS = &tls.Config{GetCertificate: proxyCert.get}
	}
	if egress.router != nil {
		// An upstream that stalls forward requests counts as failing, as a
		// failed dial would.
		tcfg.Failures = egress.router
	}
	srv, err := tunnel.New(tcfg)
	if err != nil {
		return err
	}
	// No TCP keepalive on accepted connections: idle tunnels end by
	// --idle-timeout, and the setsockopt calls cost on every new tunnel.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	listening := []zap.Field{zap.String("addr", ln.Addr().String()),
		zap.String("proxy", "http://"+ln.Addr().String()),
		zap.String("serves", "HTTP forward, CONNECT, SOCKS4/4a/5")}
	if proxyCert != nil {
		listening = append(listening, zap.Bool("tls", true),
			zap.String("https_proxy", "https://"+ln.Addr().String()))
	}
	log.Info("listening", listening...)
	ln, adm, err := listenAdmin(ctx, cfg, metrics, ln, authn, caPEMOf(ic), stdout, log)
	if err != nil {
		return err
	}

	// serveCtx outlives the signal context so that live tunnels can drain.
	serveCtx, cancelServe := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelServe()
	g, gctx := errgroup.WithContext(serveCtx)
	g.Go(func() error { return srv.Serve(serveCtx, ln) })
	if adm != nil {
		g.Go(func() error { return adm.srv.Serve(serveCtx, adm.ln) })
	}
	g.Go(func() error { return egress.run(gctx) })
	g.Go(func() error { return reloadOnSIGHUP(gctx, egress, log) })
	g.Go(func() error { return watchRecoveries(gctx, ic, egress.router, 5*time.Second, log) })
	g.Go(func() error {
		select {
		case <-ctx.Done():
			log.Info("shutting down", zap.Duration("drain_timeout", cfg.DrainTimeout))
		case <-gctx.Done():
		}
		drainCtx, cancel := context.WithTimeout(serveCtx, cfg.DrainTimeout)
		defer cancel()
		err := srv.Shutdown(drainCtx)
		cancelServe() // stops the background tasks
		if errors.Is(err, context.DeadlineExceeded) {
			log.Info("drain timeout: closed remaining tunnels")
			err = nil
		}
		return err
	})
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
	return nil
}

// isLoopbackListen reports whether addr binds loopback only; an empty host
// or a wildcard binds every interface.
func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// proxyCert is the certificate of the HTTPS proxy (--tls-cert, --tls-key),
// swapped whole on reload so that handshakes never see a half-loaded pair.
type proxyCert struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// loadProxyCert loads the HTTPS proxy's certificate, or returns nil when
// --tls-cert is not set.
func loadProxyCert(certFile, keyFile string) (*proxyCert, error) {
	if certFile == "" {
		return nil, nil
	}
	pc := &proxyCert{certFile: certFile, keyFile: keyFile}
	if err := pc.reload(); err != nil {
		return nil, err
	}
	return pc, nil
}

func (pc *proxyCert) reload() error {
	cert, err := tls.LoadX509KeyPair(pc.certFile, pc.keyFile)
	if err != nil {
		return fmt.Errorf("--tls-cert: %w", err)
	}
	pc.cur.Store(&cert)
	return nil
}

func (pc *proxyCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return pc.cur.Load(), nil
}

// reloadOnSIGHUP reloads the upstream lists whenever the process gets SIGHUP.
func reloadOnSIGHUP(ctx context.Context, e *egress, log *zap.Logger) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			log.Info("SIGHUP: reloading upstreams, users and the TLS certificate")
			_ = e.reload(ctx) // failures are logged where they happen
		}
	}
}

// egress is how connections leave: directly, or through a pool of upstreams
// kept fresh by a background updater.
type egress struct {
	dialer dial.Dialer
	router *rotate.Router // nil for direct egress
	store  rotate.Store   // the --state store; nil for direct egress
	close  func()
	run    func(ctx context.Context) error
	reload func(ctx context.Context) error
}

func (e *egress) Close() { e.close() }

func newEgress(ctx context.Context, cfg serveConfig, log *zap.Logger) (*egress, error) {
	if len(cfg.Upstreams) == 0 && len(cfg.Pools) == 0 {
		log.Info("egressing directly", zap.String("hint", "no --upstreams given: hopper is a plain proxy"))
		idle := &dial.IdlePool{}
		return &egress{
			dialer: &dial.Direct{Idle: idle},
			close:  func() { _ = idle.Close() },
			run:    func(ctx context.Context) error { <-ctx.Done(); return nil },
			reload: func(context.Context) error { return nil },
		}, nil
	}
	rc, err := routerConfig(cfg, log)
	if err != nil {
		return nil, err
	}
	store, err := openState(cfg, log)
	if err != nil {
		return nil, err
	}
	rc.Pool.Store = store
	router, err := rotate.NewRouter(rc)
	if err != nil {
		_ = store.Close()
		return nil, usagef("%w", err)
	}
	// Load once before serving so the first client finds the pool; a list
	// that fails now is retried by the updater and answered 503 meanwhile.
	if err := router.Reload(ctx); err != nil {
		log.Warn("upstreams not loaded yet; clients get 503 until a reload succeeds", zap.Error(err))
	}
	for _, ps := range router.Status() {
		log.Info("rotating", zap.String("pool", ps.Name), zap.Int("upstreams", len(ps.Upstreams)),
			zap.Strings("sources", redactSources(rc.Pools[ps.Name].Upstreams)),
			zap.String("rotate", cfg.Rotate), zap.Duration("refresh", cfg.Refresh))
	}
	return &egress{
		dialer: router,
		router: router,
		store:  store,
		close:  func() { _ = router.Close(); _ = store.Close() },
		run:    router.Run,
		reload: func(ctx context.Context) error {
			err := router.Reload(ctx)
			if err != nil {
				log.Warn("reload failed; keeping the previous pool", zap.Error(err))
			}
			return err
		},
	}, nil
}

// routerConfig maps flags and the pools:/rules: blocks onto rotate's config.
func routerConfig(cfg serveConfig, log *zap.Logger) (rotate.RouterConfig, error) {
	rotation, err := rotate.ParseRotation(cfg.Rotate)
	if err != nil {
		return rotate.RouterConfig{}, usagef("--rotate: %w", err)
	}
	policy, err := rotate.ParsePolicy(cfg.Policy)
	if err != nil {
		return rotate.RouterConfig{}, usagef("--policy: %w", err)
	}
	retries := cfg.Retries
	if retries == 0 {
		retries = -1 // rotate: zero selects the default, negative none
	}
	failures := cfg.FailuresUntilQuarantine
	if failures == 0 {
		failures = -1 // never quarantine
	}
	probeEvery := cfg.ProbeInterval
	if probeEvery == 0 {
		probeEvery = -1 // no probing
	}
	pools := cfg.Pools
	if len(pools) == 0 {
		pools = map[string]rotate.PoolSpec{rotate.DefaultPoolName: {Upstreams: cfg.Upstreams}}
	}
	rc := rotate.RouterConfig{
		Pools: pools,
		Rules: cfg.Rules,
		Pool: rotate.Config{
			Retries:                 retries,
			ConnectTimeout:          cfg.ConnectTimeout,
			Rotate:                  rotation,
			Policy:                  policy,
			FailuresUntilQuarantine: failures,
			Quarantine:              cfg.Quarantine,
			SessionTTL:              cfg.SessionTTL,
			MaxQueueWait:            cfg.MaxQueueWait,
			ReserveTTL:              cfg.ReservationTTL,
			Logger:                  log,
		},
		Updater: rotate.UpdaterConfig{Interval: cfg.Refresh},
		Prober:  rotate.ProberConfig{URL: cfg.ProbeURL, Judge: cfg.Judge, Interval: probeEvery},
	}
	if err := rc.Validate(); err != nil {
		return rc, usagef("%s", oneLine(err))
	}
	return rc, nil
}

// oneLine joins a multi-error into one line for the command line.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// redactSources hides credentials and query strings in list URLs.
func redactSources(srcs []string) []string {
	out := make([]string, len(srcs))
	for i, s := range srcs {
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" || u.Host == "" {
			out[i] = s
			continue
		}
		u.User = nil
		u.RawQuery = ""
		out[i] = u.String()
	}
	return out
}
