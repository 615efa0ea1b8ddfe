package dial

import (
	"context"
	"errors"
	"net"
)

// ErrAuth is wrapped by an Authenticator when credentials are missing or
// wrong. Front ends answer it with 407 or SOCKS auth status 0x01.
var ErrAuth = errors.New("proxy authentication failed")

// Authenticator checks proxy credentials where a client first presents them
// (HTTP Proxy-Authorization, SOCKS5 RFC 1929, SOCKS4 user id). A nil
// Authenticator means authentication is off: every username is accepted and
// only parsed for its controls.
type Authenticator interface {
	// Authenticate returns the account name for the base username (controls
	// already stripped) and password, or an error wrapping ErrAuth.
	Authenticate(ctx context.Context, client net.Addr, user, pass string) (account string, err error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, client net.Addr, user, pass string) (string, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, client net.Addr, user, pass string) (string, error) {
	return f(ctx, client, user, pass)
}
