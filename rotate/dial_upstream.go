package rotate

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"

	"github.com/hopper-proxy/hopper/dial"
)

// dialEnv is what dialing through an upstream needs from the pool.
type dialEnv struct {
	tls      *tls.Config // base for https:// upstreams; ServerName set per upstream
	idle     *dial.IdlePool
	resolver *net.Resolver
}

// dial makes one attempt through u: a tunnel to req.Target, or for a forward
// request through an HTTP(S) upstream a connection to the upstream itself.
// ctx bounds establishment only. The returned Outbound has Conn and, for
// forward connections, Proxy, ProxyAuthorization, Reused and Release set;
// the pool fills in the rest. seed fills a templated entry's session
// placeholders; zero draws a fresh session.
func (u *Upstream) dial(ctx context.Context, req *dial.Request, env *dialEnv, seed uint64) (*dial.Outbound, error) {
	e := &u.entry
	if e.Scheme == SchemeDirect {
		c, err := dialDirect(ctx, e.Local, req.Target)
		if err != nil {
			return nil, err
		}
		return &dial.Outbound{Conn: c}, nil
	}
	host, addr, user, pass, auth := e.Host, u.addr, e.User, e.Pass, u.basicAuth
	if u.templated {
		f, err := newFill(seed, req)
		if err != nil {
			return nil, err
		}
		if addr == "" {
			host = f.expand(e.Host)
			addr = net.JoinHostPort(host, strconv.Itoa(int(e.Port)))
		}
		user, pass = f.expand(user), f.expand(pass)
		if user != "" && !e.Scheme.socks() {
			auth = basicAuth(user, pass)
		}
	}
	switch e.Scheme {
	case SchemeHTTP, SchemeHTTPS:
		if req.Forward {
			return u.dialForward(ctx, env, host, addr, auth)
		}
		c, err := connectProxy(ctx, e.Scheme, host, addr, env)
		if err != nil {
			return nil, err
		}
		tc, err := connectHTTP(ctx, c, req.Target, auth)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		return &dial.Outbound{Conn: tc}, nil
	case SchemeSOCKS4, SchemeSOCKS4A:
		t, err := resolveSOCKSTarget(ctx, env.resolver, req.Target, e.Scheme == SchemeSOCKS4A)
		if err != nil {
			return nil, err
		}
		if t.name == "" && !t.ip.Is4() {
			return nil, fmt.Errorf("%w: %s: SOCKS4 reaches IPv4 targets only", dial.ErrTargetUnreachable, req.Target)
		}
		c, err := connectProxy(ctx, e.Scheme, host, addr, env)
		if err != nil {
			return nil, err
		}
		if err := connectSOCKS4(ctx, c, t, user); err != nil {
			_ = c.Close()
			return nil, err
		}
		return &dial.Outbound{Conn: c}, nil
	default: // SOCKS5, socks5h
		t, err := resolveSOCKSTarget(ctx, env.resolver, req.Target, e.Scheme == SchemeSOCKS5H)
		if err != nil {
			return nil, err
		}
		c, err := connectProxy(ctx, e.Scheme, host, addr, env)
		if err != nil {
			return nil, err
		}
		if _, err := connectSOCKS5(ctx, c, t, user, pass); err != nil {
			_ = c.Close()
			return nil, err
		}
		return &dial.Outbound{Conn: c}, nil
	}
}

// connectProxy opens a connection to the upstream at addr, with TLS on top
// for https:// upstreams (verified against host with env.tls's roots).
func connectProxy(ctx context.Context, scheme Scheme, host, addr string, env *dialEnv) (net.Conn, error) {
	c, err := dial.DialTCP(ctx, nil, addr)
	if err != nil {
		return nil, proxyFailure("connect", err)
	}
	if scheme != SchemeHTTPS {
		return c, nil
	}
	cfg := env.tls.Clone()
	cfg.ServerName = host
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, proxyFailure("tls", err)
	}
	return tc, nil
}
