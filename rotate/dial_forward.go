package rotate

import (
	"context"

	"github.com/hopper-proxy/hopper/dial"
)

// dialForward answers a plain-HTTP forward request through an HTTP(S)
// upstream with a connection to the upstream itself (Outbound.Proxy), taken
// from the idle pool when one is kept for this upstream, so the upstream sees
// ordinary keep-alive forward-proxy traffic. The caller sends absolute-form
// requests with auth as Proxy-Authorization, and returns the connection with
// Outbound.Done.
func (u *Upstream) dialForward(ctx context.Context, env *dialEnv, host, addr, auth string) (*dial.Outbound, error) {
	key := u.entry.Scheme.String() + "://" + addr
	release := func(o *dial.Outbound, reusable bool) {
		if reusable && env.idle != nil {
			env.idle.Put(key, o.Conn)
			return
		}
		_ = o.Conn.Close()
	}
	if env.idle == nil {
		// Keeping idle connections is off.
	} else if c := env.idle.Get(key); c != nil {
		return &dial.Outbound{Conn: c, Proxy: true, ProxyAuthorization: auth, Reused: true, Release: release}, nil
	}
	c, err := connectProxy(ctx, u.entry.Scheme, host, addr, env)
	if err != nil {
		return nil, err
	}
	return &dial.Outbound{Conn: c, Proxy: true, ProxyAuthorization: auth, Release: release}, nil
}
