package mitm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	utls "github.com/refraction-networking/utls"

	"github.com/hopper-proxy/hopper/fingerprint"
)

// Profile is a browser identity: everything an origin can fingerprint a
// browser by, kept as data so that adding a browser version is one entry
// (see builtinProfiles): the ClientHello, the HTTP/2 connection preface and
// how HEADERS frames look, the request headers it sends and their order, and
// the fingerprints an origin is expected to compute from all that.
//
// The User-Agent and client hints name the browser version whose
// ClientHello the profile really sends, so the TLS and HTTP layers agree.
type Profile struct {
	// Name is how --profile and rules name it.
	Name string
	// Browser says which browser, version and platform the profile is, for
	// logs and documentation ("Chrome 156 on Windows").
	Browser string
	// Superseded marks an earlier version of a browser that has a current
	// profile, kept so that scripts naming it still work; random never
	// picks it.
	Superseded bool
	// HelloID is the uTLS ClientHello the origin handshake sends, unless
	// HelloSpec is set.
	HelloID utls.ClientHelloID
	// HelloSpec, if set, builds the whole ClientHello instead, for a browser
	// uTLS has no current parrot for. It is called for every handshake and
	// must return a spec of its own each time (uTLS changes it).
	HelloSpec func() (*utls.ClientHelloSpec, error)
	// HTTP2 is the browser's HTTP/2 connection preface (SETTINGS in order,
	// connection WINDOW_UPDATE, PRIORITY frames), the pseudo-header order and
	// priority of its HEADERS frames, and its first stream's identifier.
	HTTP2 fingerprint.HTTP2
	// Headers is the bundle the browser sends, in its order. Identity
	// headers always replace the client's; navigation headers are sent only
	// when the client does not say what kind of request it makes (no
	// Sec-Fetch-Mode), as a browser does when the user enters a URL.
	Headers []ProfileHeader
	// HeaderOrder is the order of a navigation's header fields, lower-case
	// names; "*" marks where fields it does not list go (in the client's
	// order when known, else sorted). Host and Connection take their place
	// over HTTP/1.1 only. FetchHeaderOrder is the order of every other
	// request (subresources, fetch and XHR); nil means HeaderOrder.
	HeaderOrder, FetchHeaderOrder []string
	// JA4 and Akamai are the fingerprints an origin computes from this
	// profile's ClientHello and HTTP/2 preface; the tests hold the profile
	// to them (for HTTP2, Akamai must equal HTTP2.Akamai()).
	JA4, Akamai string

	// mirror marks the "mirror" placeholder: the identity copies each
	// client's own fingerprint instead.
	mirror bool
}

// ProfileHeader is one header of a profile's bundle.
type ProfileHeader struct {
	// Name is spelled as the browser spells it over HTTP/1.1 (HTTP/2 sends
	// every name in lower case).
	Name, Value string
	// Navigation marks a header that describes a top-level navigation
	// (Accept, Upgrade-Insecure-Requests, Sec-Fetch-*, Priority) rather than
	// the browser itself.
	Navigation bool
	// HTTP2Only marks a header the browser sends over HTTP/2 only (Chrome's
	// Priority, Firefox's TE: trailers).
	HTTP2Only bool
}

// Header returns the value of the profile's header name ("" when absent).
func (p *Profile) Header(name string) string {
	for _, h := range p.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// chromium reports whether the profile sends client hints (sec-ch-ua).
func (p *Profile) chromium() bool { return p.Header("sec-ch-ua") != "" }

// Mirror reports whether p is the "mirror" profile, which copies every
// client's own ClientHello, HTTP/2 preface and header order.
func (p *Profile) Mirror() bool { return p.mirror }

// helloSpec returns a fresh ClientHelloSpec of p: HelloSpec's, or uTLS's
// for HelloID.
func (p *Profile) helloSpec() (*utls.ClientHelloSpec, error) {
	if p.HelloSpec != nil {
		return p.HelloSpec()
	}
	spec, err := utls.UTLSIdToSpec(p.HelloID)
	if err != nil {
		return nil, err
	}
	return &spec, nil
}

// Profiles returns the built-in profiles, a fresh copy per call. The
// current ones, which random picks from: chrome (Chrome 156 on Windows, on
// the ClientHello recorded from Chromium 156), edge (Edge 156 on Windows,
// the same ClientHello), firefox (Firefox 153 on Windows, recorded from
// Firefox ESR 153), safari (Safari 16.0 on macOS) and ios (Safari on iOS
// 14). Then the superseded versions, by name only: chrome133, edge133 and
// firefox120 (uTLS's parrots). The mirror profile is not among them.
func Profiles() []Profile { return builtinProfiles() }

// ProfileNames lists the built-in profile names, in Profiles order.
func ProfileNames() []string {
	ps := Profiles()
	names := make([]string, len(ps))
	for i := range ps {
		names[i] = ps[i].Name
	}
	return names
}

// LookupProfile returns the built-in profile called name, or an error
// wrapping ErrUnknownProfile that lists the names.
func LookupProfile(name string) (*Profile, error) {
	ps := Profiles()
	for i := range ps {
		if ps[i].Name == name {
			return &ps[i], nil
		}
	}
	return nil, unknownProfile(name)
}

// unknownProfile is the error for a name that is no profile.
func unknownProfile(name string) error {
	return fmt.Errorf("%w %q (profiles: %s, or %s or %s)", ErrUnknownProfile, name,
		strings.Join(ProfileNames(), ", "), ProfileRandom, ProfileMirror)
}

// mirrorProfile is the placeholder identities of the mirror profile carry.
var mirrorProfile = &Profile{Name: ProfileMirror, Browser: "the client's own", mirror: true}

// profileChooser picks the profile of a new identity.
type profileChooser struct {
	all    []*Profile // by name
	random []*Profile // the current ones
	fixed  *Profile   // nil: random
	rules  []profileRule
}

type profileRule struct {
	host  hostPattern
	fixed *Profile // nil: random
}

func newProfileChooser(name string, rules []ProfileRule) (profileChooser, error) {
	ps := Profiles()
	c := profileChooser{all: make([]*Profile, len(ps))}
	for i := range ps {
		c.all[i] = &ps[i]
		if !ps[i].Superseded {
			c.random = append(c.random, &ps[i])
		}
	}
	var err error
	if c.fixed, err = c.resolve(name); err != nil {
		return c, fmt.Errorf("profile: %w", err)
	}
	for i, r := range rules {
		pat, err := parsePattern(r.Host)
		if err != nil {
			return c, fmt.Errorf("profile rule %d: %w", i+1, err)
		}
		p, err := c.resolve(r.Profile)
		if err != nil {
			return c, fmt.Errorf("profile rule %d (host %q): %w", i+1, r.Host, err)
		}
		c.rules = append(c.rules, profileRule{host: pat, fixed: p})
	}
	return c, nil
}

// resolve maps a name to its profile; "" and "random" are nil, "mirror"
// the mirror placeholder.
func (c *profileChooser) resolve(name string) (*Profile, error) {
	switch name {
	case "", ProfileRandom:
		return nil, nil
	case ProfileMirror:
		return mirrorProfile, nil
	}
	i := slices.IndexFunc(c.all, func(p *Profile) bool { return p.Name == name })
	if i < 0 {
		return nil, unknownProfile(name)
	}
	return c.all[i], nil
}

// named is the profile called name for an identity another instance made:
// a built-in one, or the mirror placeholder when this chooser may mirror
// (only then are clients' ClientHellos kept); nil otherwise.
func (c *profileChooser) named(name string) *Profile {
	if name == ProfileMirror {
		if c.mirrors() {
			return mirrorProfile
		}
		return nil
	}
	i := slices.IndexFunc(c.all, func(p *Profile) bool { return p.Name == name })
	if i < 0 {
		return nil
	}
	return c.all[i]
}

// mirrors reports whether any identity may take the mirror profile, so
// that every intercepted client's ClientHello and header order are kept.
func (c *profileChooser) mirrors() bool {
	if c.fixed == mirrorProfile {
		return true
	}
	for _, r := range c.rules {
		if r.fixed == mirrorProfile {
			return true
		}
	}
	return false
}

// choose picks the profile for a new identity for host. A random choice
// avoids prev (the identity being replaced) so that rotation changes it.
func (c *profileChooser) choose(host string, prev *Profile) *Profile {
	fixed := c.fixed
	for _, r := range c.rules {
		if r.host.Match(host) {
			fixed = r.fixed
			break
		}
	}
	if fixed != nil {
		return fixed
	}
	for {
		p := c.random[rand.IntN(len(c.random))]
		if p != prev || len(c.random) == 1 {
			return p
		}
	}
}
