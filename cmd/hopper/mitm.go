package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/admin"
	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/mitm"
	"github.com/hopper-proxy/hopper/rotate"
	"github.com/hopper-proxy/hopper/socks"
	"github.com/hopper-proxy/hopper/tunnel"
)

// validateMITM checks the interception flags before anything starts, so a
// bad profile name or pattern is a config error even without --mitm.
func (c *serveConfig) validateMITM() error {
	opts := c.mitmConfig()
	if err := opts.ValidateOptions(); err != nil {
		return fmt.Errorf("mitm: %w", err)
	}
	if c.RotateAfterRequests < 0 {
		return fmt.Errorf("--rotate-after-requests: must be 0 (never) or more, got %d", c.RotateAfterRequests)
	}
	return nil
}

// mitmConfig maps the flags onto mitm.Config, without CA, dialer and logger.
func (c *serveConfig) mitmConfig() mitm.Config {
	return mitm.Config{
		Profile:             c.Profile,
		ProfileRules:        c.ProfileRules,
		Hosts:               c.MITMHosts,
		Skip:                c.MITMSkip,
		InsecureOrigin:      c.InsecureOrigin,
		RotateOn429:         c.RotateOn429,
		RotateAfterRequests: c.RotateAfterRequests,
		ConnectTimeout:      c.ConnectTimeout,
		HandshakeTimeout:    c.HeaderTimeout,
		IdleTimeout:         c.IdleTimeout,
	}
}

// loadServeCA loads the CA for --mitm (nil without it). A missing CA is a
// one-line usage error saying how to make one.
func loadServeCA(cfg serveConfig) (*mitm.CA, error) {
	if !cfg.MITM {
		return nil, nil
	}
	dir := cfg.CADir
	if dir == "" {
		def, err := mitm.DefaultCADir()
		if err != nil {
			return nil, usagef("--ca-dir is required: %w", err)
		}
		dir = def
	}
	ca, err := mitm.LoadCA(dir)
	if err != nil {
		if isNoCA(err) {
			return nil, usagef("--mitm needs a CA and %s has none: run 'hopper ca init' (add --ca-dir DIR to keep it elsewhere)", dir)
		}
		return nil, fmt.Errorf("--mitm: %w", err)
	}
	return ca, nil
}

// newInterceptor builds the TLS interception stage for --mitm with ca, or
// returns nil without it (ca nil). Requests inside an intercepted tunnel
// follow --rotate (with direct egress every dial leaves the same way, so
// one origin connection serves the whole tunnel). With --admin (metrics
// non-nil) its figures go to the metrics.
func newInterceptor(ctx context.Context, cfg serveConfig, ca *mitm.CA, d dial.Dialer, e *egress, metrics *admin.Metrics, log *zap.Logger) (*mitm.Interceptor, error) {
	if ca == nil {
		return nil, nil
	}
	mc := cfg.mitmConfig()
	mc.CA, mc.Dialer, mc.Logger = ca, d, log.Named("mitm")
	mc.RequestsPerDial = requestsPerDial(cfg.Rotate)
	if metrics != nil {
		mc.Observer = metrics
	}
	if e.router == nil {
		mc.RequestsPerDial = -1
	} else {
		// Repeated 403s from an origin count against the exit, as a failed
		// dial would: enough of them quarantine it.
		router := e.router
		mc.OnBan = func(upstream, site string, err error) {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			router.ReportFailure(rctx, upstream, fmt.Errorf("banned by %s: %w", site, err))
		}
		// Instances sharing --state on Redis share identities too: one per
		// (exit, site), whichever instance a request reaches. (With direct
		// egress each instance is an exit of its own: nothing to share.)
		if e.store != nil && e.store.Health().Shared {
			mc.Shared = sharedIdentities{e.store}
		}
	}
	ic, err := mitm.New(mc)
	if err != nil {
		return nil, usagef("%w", err)
	}
	if metrics != nil {
		metrics.WatchInterception(ic.LeavesMinted, ic.Identities)
	}
	if cfg.InsecureOrigin {
		log.Warn("--insecure-origin: origin certificates are NOT verified; use for testing only")
	}
	log.Info("intercepting TLS", zap.String("ca", ca.String()), zap.String("ca_dir", ca.Dir()),
		zap.String("profile", profileName(cfg.Profile)), zap.Int("requests_per_dial", mc.RequestsPerDial),
		zap.Bool("shared_identities", mc.Shared != nil))
	return ic, nil
}

func isNoCA(err error) bool { return err != nil && errors.Is(err, mitm.ErrNoCA) }

func profileName(p string) string {
	if p == "" {
		return mitm.ProfileRandom
	}
	return p
}

// requestsPerDial maps --rotate onto mitm.Config.RequestsPerDial.
func requestsPerDial(rotation string) int {
	r, err := rotate.ParseRotation(rotation)
	if err != nil {
		return 1
	}
	switch r.Mode {
	case rotate.RotatePerConnection:
		return -1
	case rotate.RotateEveryN:
		return r.Every
	default:
		return 1
	}
}

// vettedInterceptor asks the ACL before interception takes a stream over.
// Interception answers the client (200, SOCKS success) before anything is
// dialed, so a denied target would otherwise get its 403 inside TLS the
// client had to set up first; declined here, the stream goes the ordinary
// way, through the ACL dialer, and gets the error contract's 403 / 0x02.
type vettedInterceptor struct {
	*mitm.Interceptor
	check func(*dial.Request) error
}

func (v vettedInterceptor) Intercept(req *dial.Request) bool {
	return v.check(req) == nil && v.Interceptor.Intercept(req)
}

// tunnelInterceptor and socksInterceptor are ic, vetted by check, as the
// front ends' interfaces: nil, never a typed nil, without --mitm.
func tunnelInterceptor(ic *mitm.Interceptor, check func(*dial.Request) error) tunnel.Interceptor {
	if ic == nil {
		return nil
	}
	return vettedInterceptor{ic, check}
}

func socksInterceptor(ic *mitm.Interceptor, check func(*dial.Request) error) socks.Interceptor {
	if ic == nil {
		return nil
	}
	return vettedInterceptor{ic, check}
}

// caPEMOf serves /ca.pem on the admin port while interception is on.
func caPEMOf(ic *mitm.Interceptor) func() []byte {
	if ic == nil {
		return nil
	}
	return ic.CA().PEM
}

// watchRecoveries gives every upstream that comes back from quarantine new
// identities: whatever sites saw of it before is best forgotten. It polls
// the pools' status, which is cheap, every interval until ctx ends.
func watchRecoveries(ctx context.Context, ic *mitm.Interceptor, r *rotate.Router, interval time.Duration, log *zap.Logger) error {
	if ic == nil || r == nil {
		return nil
	}
	var rt recoveryTracker
	rt.recovered(r.Status())
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			for _, label := range rt.recovered(r.Status()) {
				if n := ic.ResetUpstream(label); n > 0 {
					log.Info("upstream left quarantine: new identities", zap.String("upstream", label), zap.Int("identities", n))
				}
			}
		}
	}
}

// recoveryTracker spots upstreams that were quarantined since it last
// looked and are healthy again, by their quarantine counters, so a
// quarantine that began and ended between two looks is not missed.
type recoveryTracker struct {
	seen map[[2]string]uint64 // (pool, label) → quarantines accounted for
}

// recovered returns the labels of upstreams that left quarantine since the
// previous call; the first call only records where things stand.
func (rt *recoveryTracker) recovered(pools []rotate.PoolStatus) []string {
	first := rt.seen == nil
	if first {
		rt.seen = make(map[[2]string]uint64)
	}
	var out []string
	for _, ps := range pools {
		for _, u := range ps.Upstreams {
			k := [2]string{ps.Name, u.Label}
			prev, known := rt.seen[k]
			switch {
			case first || !known:
				rt.seen[k] = u.Quarantines
			case u.State == rotate.StateHealthy && u.Quarantines > prev:
				rt.seen[k] = u.Quarantines
				out = append(out, u.Label)
			}
		}
	}
	return out
}
