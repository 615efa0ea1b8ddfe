package tunnel

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/hopper-proxy/hopper/dial"
)

// identity is who a request comes from and the controls it carries.
type identity struct {
	user    string // account (auth on) or base username (auth off)
	session string
	country string
}

// identify reads Proxy-Authorization and Hopper-Session/Hopper-Country from
// h. With Config.Auth set, Basic credentials are required and checked; the
// failure wraps dial.ErrAuth. With auth off any username is accepted and only
// parsed. Credentials already accepted on this connection are not checked
// again. The headers, when present, override the username's controls.
func (c *conn) identify(h *head) (identity, error) {
	var id identity
	raw := h.get("Proxy-Authorization")
	auth := c.srv.cfg.Auth
	switch {
	case raw != nil && c.authRaw != "" && string(raw) == c.authRaw:
		id = c.authed
	case auth != nil:
		name, pass, ok := parseBasic(raw)
		if !ok {
			return id, fmt.Errorf("%w: no Basic credentials", dial.ErrAuth)
		}
		u := dial.ParseUsername(name)
		account, err := auth.Authenticate(c.ctx, c.rwc.RemoteAddr(), u.Base, pass)
		if err != nil {
			if !errors.Is(err, dial.ErrAuth) {
				err = fmt.Errorf("%w: %w", dial.ErrAuth, err)
			}
			return id, err
		}
		id = identity{user: account, session: u.Session, country: u.Country}
		c.authRaw, c.authed = string(raw), id
	case raw != nil:
		if name, _, ok := parseBasic(raw); ok {
			u := dial.ParseUsername(name)
			id = identity{user: u.Base, session: u.Session, country: u.Country}
			c.authRaw, c.authed = string(raw), id
		}
	}
	if v := h.get("Hopper-Session"); len(v) > 0 {
		id.session = string(v)
	}
	if v := h.get("Hopper-Country"); len(v) > 0 {
		id.country = strings.ToLower(string(v))
	}
	return id, nil
}

// parseBasic decodes a "Basic base64(user:pass)" credential (RFC 7617).
func parseBasic(v []byte) (user, pass string, ok bool) {
	const prefix = "basic "
	if !hasPrefixFold(v, prefix) {
		return "", "", false
	}
	dec, err := base64.StdEncoding.DecodeString(string(trimOWS(v[len(prefix):])))
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(dec), ":")
	return user, pass, ok
}

// asDialError finds the *dial.Error in err's chain.
func asDialError(err error) (*dial.Error, bool) {
	var de *dial.Error
	ok := errors.As(err, &de)
	return de, ok
}
