package mitm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	utls "github.com/refraction-networking/utls"
)

// Profile is a browser identity: the ClientHello it sends and the request
// headers it sends with a top-level navigation, in its order.
//
// The User-Agent and client hints name the browser version whose ClientHello
// the profile's HelloID parrots, so the TLS and HTTP layers agree.
type Profile struct {
	// Name is how --profile and rules name it.
	Name string
	// HelloID is the uTLS ClientHello the origin handshake sends.
	HelloID utls.ClientHelloID
	// Headers is the bundle the browser sends, in its order. Identity
	// headers always replace the client's; navigation headers are sent only
	// when the client does not say what kind of request it makes (no
	// Sec-Fetch-Mode), as a browser does when the user enters a URL.
	Headers []ProfileHeader
}

// ProfileHeader is one header of a profile's bundle.
type ProfileHeader struct {
	Name, Value string
	// Navigation marks a header that describes a top-level navigation
	// (Accept, Upgrade-Insecure-Requests, Sec-Fetch-*, Priority) rather than
	// the browser itself.
	Navigation bool
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

// Profiles returns the built-in profiles, a fresh copy per call:
// chrome (133, Windows), edge (85, Windows), firefox (120, Windows),
// safari (16.0, macOS) and ios (Safari on iOS 14).
func Profiles() []Profile {
	nav := func(name, value string) ProfileHeader {
		return ProfileHeader{Name: name, Value: value, Navigation: true}
	}
	id := func(name, value string) ProfileHeader { return ProfileHeader{Name: name, Value: value} }
	return []Profile{
		{
			Name:    "chrome",
			HelloID: utls.HelloChrome_133,
			Headers: []ProfileHeader{
				id("sec-ch-ua", `"Not(A:Brand";v="99", "Google Chrome";v="133", "Chromium";v="133"`),
				id("sec-ch-ua-mobile", "?0"),
				id("sec-ch-ua-platform", `"Windows"`),
				nav("Upgrade-Insecure-Requests", "1"),
				id("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36"),
				nav("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"),
				nav("Sec-Fetch-Site", "none"),
				nav("Sec-Fetch-Mode", "navigate"),
				nav("Sec-Fetch-User", "?1"),
				nav("Sec-Fetch-Dest", "document"),
				id("Accept-Encoding", "gzip, deflate, br, zstd"),
				id("Accept-Language", "en-US,en;q=0.9"),
				nav("Priority", "u=0, i"),
			},
		},
		{
			Name:    "edge",
			HelloID: utls.HelloEdge_85,
			Headers: []ProfileHeader{
				id("sec-ch-ua", `"Chromium";v="85", "\\Not;A\"Brand";v="99", "Microsoft Edge";v="85"`),
				id("sec-ch-ua-mobile", "?0"),
				nav("Upgrade-Insecure-Requests", "1"),
				id("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/85.0.4183.102 Safari/537.36 Edg/85.0.564.51"),
				nav("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.9"),
				nav("Sec-Fetch-Site", "none"),
				nav("Sec-Fetch-Mode", "navigate"),
				nav("Sec-Fetch-User", "?1"),
				nav("Sec-Fetch-Dest", "document"),
				id("Accept-Encoding", "gzip, deflate, br"),
				id("Accept-Language", "en-US,en;q=0.9"),
			},
		},
		{
			Name:    "firefox",
			HelloID: utls.HelloFirefox_120,
			Headers: []ProfileHeader{
				id("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0"),
				nav("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
				id("Accept-Language", "en-US,en;q=0.5"),
				id("Accept-Encoding", "gzip, deflate, br"),
				nav("Upgrade-Insecure-Requests", "1"),
				nav("Sec-Fetch-Dest", "document"),
				nav("Sec-Fetch-Mode", "navigate"),
				nav("Sec-Fetch-Site", "none"),
				nav("Sec-Fetch-User", "?1"),
			},
		},
		{
			Name:    "safari",
			HelloID: utls.HelloSafari_16_0,
			Headers: []ProfileHeader{
				nav("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
				id("User-Agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Safari/605.1.15"),
				id("Accept-Language", "en-US,en;q=0.9"),
				id("Accept-Encoding", "gzip, deflate, br"),
			},
		},
		{
			Name:    "ios",
			HelloID: utls.HelloIOS_14,
			Headers: []ProfileHeader{
				nav("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
				id("User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 14_8 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.1.2 Mobile/15E148 Safari/604.1"),
				id("Accept-Language", "en-us"),
				id("Accept-Encoding", "gzip, deflate, br"),
			},
		},
	}
}

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
	return nil, fmt.Errorf("%w %q (profiles: %s, or %s)", ErrUnknownProfile, name, strings.Join(ProfileNames(), ", "), ProfileRandom)
}

// profileChooser picks the profile of a new identity.
type profileChooser struct {
	all   []*Profile
	fixed *Profile // nil: random
	rules []profileRule
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

// resolve maps a name to its profile; "" and "random" are nil.
func (c *profileChooser) resolve(name string) (*Profile, error) {
	if name == "" || name == ProfileRandom {
		return nil, nil
	}
	i := slices.IndexFunc(c.all, func(p *Profile) bool { return p.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("%w %q (profiles: %s, or %s)", ErrUnknownProfile, name, strings.Join(ProfileNames(), ", "), ProfileRandom)
	}
	return c.all[i], nil
}

// choose picks the profile for a new identity for host. A random choice
// avoids prev (the identity being replaced) so that rotation changes it.
func (c *profileChooser) choose(host string, prev *Profile) *Profile {
	fixed := c.fixed
	for _, r := range c.rules {
		if r.host.match(host) {
			fixed = r.fixed
			break
		}
	}
	if fixed != nil {
		return fixed
	}
	for {
		p := c.all[rand.IntN(len(c.all))]
		if p != prev || len(c.all) == 1 {
			return p
		}
	}
}
