package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/admin"
	"github.com/hopper-proxy/hopper/dial"
)

// adminServer is the --admin server and its listener.
type adminServer struct {
	srv *admin.Server
	ln  net.Listener
}

// newMetrics returns what the front ends report to for --admin, or nil
// when --admin is off.
func newMetrics(cfg serveConfig, e *egress) *admin.Metrics {
	if cfg.Admin == "" {
		return nil
	}
	var src admin.UpstreamSource // nil for direct egress, never a typed nil
	if e.router != nil {
		src = e.router
	}
	return admin.NewMetrics(admin.MetricsConfig{Upstreams: src})
}

// observerOf is m as a dial.Observer: nil, not a typed nil, when m is.
func observerOf(m *admin.Metrics) dial.Observer {
	if m == nil {
		return nil
	}
	return m
}

// listenAdmin opens the --admin listener and prints one line per endpoint
// to out. It returns the proxy listener to serve: proxyLn wrapped so that
// /healthz sees whether it is served. With --admin off (m nil) it returns
// proxyLn and no server. caPEM serves /ca.pem (nil: 404). On error it
// closes proxyLn.
func listenAdmin(ctx context.Context, cfg serveConfig, m *admin.Metrics, proxyLn net.Listener,
	authn dial.Authenticator, caPEM func() []byte, out io.Writer, log *zap.Logger,
) (net.Listener, *adminServer, error) {
	if m == nil {
		return proxyLn, nil, nil
	}
	fail := func(err error) (net.Listener, *adminServer, error) {
		_ = proxyLn.Close()
		return nil, nil, err
	}
	if authn == nil && !isLoopbackListen(cfg.Admin) {
		return fail(usagef("--admin %s: %w: add --auth or --users so it asks for an account", cfg.Admin, admin.ErrOpenAdmin))
	}
	watched := admin.WatchListener(proxyLn)
	srv, err := admin.New(admin.Config{
		Metrics:   m,
		ProxyAddr: proxyLn.Addr().String(),
		Serving:   watched.Serving,
		Auth:      authn,
		CAPEM:     caPEM,
		Logger:    log.Named("admin"),
	})
	if err != nil {
		return fail(err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Admin)
	if err != nil {
		return fail(fmt.Errorf("--admin: %w", err))
	}
	for _, e := range srv.Endpoints(ln.Addr()) {
		fmt.Fprintf(out, "admin: %-17s %s\n", e.Name, e.URL)
	}
	return watched, &adminServer{srv: srv, ln: ln}, nil
}

// countReloads makes e's reloads count in m (nil: nothing to count).
func countReloads(m *admin.Metrics, e *egress) {
	if m == nil {
		return
	}
	reload := e.reload
	e.reload = func(ctx context.Context) error {
		err := reload(ctx)
		m.Reloaded(err)
		return err
	}
}
