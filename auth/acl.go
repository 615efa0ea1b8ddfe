package auth

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/hopper-proxy/hopper/dial"
)

// TargetRule lists where one account may go. A target is allowed when it
// matches Hosts or CIDRs (either list empty: any host) and Ports (empty: any
// port).
type TargetRule struct {
	Hosts []string `yaml:"hosts"` // globs: "*.example.com", "api.example.net"
	CIDRs []string `yaml:"cidrs"` // for IP-literal targets: "203.0.113.0/24"
	Ports []string `yaml:"ports"` // "443", "8000-8999"
}

// ACLConfig configures an ACL.
type ACLConfig struct {
	// Accounts maps an account to its rule; accounts without one may reach
	// any target the private-range guard allows.
	Accounts map[string]TargetRule
	// AllowPrivate turns off the guard that stops clients not on loopback
	// from reaching loopback, private, link-local and CGNAT addresses.
	AllowPrivate bool
}

type compiledRule struct {
	hosts []string
	cidrs []netip.Prefix
	ports [][2]uint16
}

// ACL is a dial.Dialer that refuses targets an account may not reach with an
// error wrapping dial.ErrDenied (403 / SOCKS 0x02), and otherwise passes the
// request on, with a dial.Request.Guard that re-checks resolved addresses.
type ACL struct {
	next         dial.Dialer
	rules        map[string]compiledRule
	allowPrivate bool
}

var _ dial.Dialer = (*ACL)(nil)

// NewACL validates cfg and wraps next.
func NewACL(next dial.Dialer, cfg ACLConfig) (*ACL, error) {
	a := &ACL{next: next, rules: make(map[string]compiledRule), allowPrivate: cfg.AllowPrivate}
	for account, r := range cfg.Accounts {
		var cr compiledRule
		for _, h := range r.Hosts {
			if _, err := path.Match(h, "x"); err != nil {
				return nil, fmt.Errorf("acl %s: host pattern %q: %w", account, h, err)
			}
			cr.hosts = append(cr.hosts, strings.ToLower(h))
		}
		for _, c := range r.CIDRs {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				return nil, fmt.Errorf("acl %s: cidr %q: %w", account, c, err)
			}
			cr.cidrs = append(cr.cidrs, p.Masked())
		}
		for _, p := range r.Ports {
			lo, hi, err := parsePortRange(p)
			if err != nil {
				return nil, fmt.Errorf("acl %s: port %q: %w", account, p, err)
			}
			cr.ports = append(cr.ports, [2]uint16{lo, hi})
		}
		a.rules[account] = cr
	}
	return a, nil
}

func parsePortRange(s string) (uint16, uint16, error) {
	loS, hiS, isRange := strings.Cut(s, "-")
	lo, err := strconv.ParseUint(strings.TrimSpace(loS), 10, 16)
	if err != nil || lo == 0 {
		return 0, 0, fmt.Errorf("want a port 1-65535 or a range like 8000-8999")
	}
	hi := lo
	if isRange {
		hi, err = strconv.ParseUint(strings.TrimSpace(hiS), 10, 16)
		if err != nil || hi < lo {
			return 0, 0, fmt.Errorf("want a port 1-65535 or a range like 8000-8999")
		}
	}
	return uint16(lo), uint16(hi), nil
}

// Dial implements dial.Dialer.
func (a *ACL) Dial(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
	if err := a.Check(req); err != nil {
		return nil, &dial.Error{Target: req.Target, Err: err}
	}
	if !a.allowPrivate && !isLoopbackClient(req.Client) && req.Guard == nil {
		r := *req
		r.Guard = guardPublic
		req = &r
	}
	return a.next.Dial(ctx, req)
}

// Check applies the account's rule and the private-range guard to the
// target as named (before resolution).
func (a *ACL) Check(req *dial.Request) error {
	host, portS, err := net.SplitHostPort(req.Target)
	if err != nil {
		return fmt.Errorf("%w: bad target %q", dial.ErrDenied, req.Target)
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	port, _ := strconv.ParseUint(portS, 10, 16)
	ip, ipErr := netip.ParseAddr(host)
	if !a.allowPrivate && !isLoopbackClient(req.Client) {
		if (ipErr == nil && isPrivate(ip.Unmap())) || host == "localhost" || strings.HasSuffix(host, ".localhost") {
			return fmt.Errorf("%w: %s is a private address, not reachable from outside", dial.ErrDenied, host)
		}
	}
	r, ok := a.rules[req.User]
	if !ok {
		return nil
	}
	if len(r.hosts)+len(r.cidrs) > 0 && !matchHost(r, host, ip, ipErr == nil) {
		return fmt.Errorf("%w: account %q may not reach %s", dial.ErrDenied, req.User, host)
	}
	if len(r.ports) > 0 && !matchPort(r, uint16(port)) {
		return fmt.Errorf("%w: account %q may not reach port %d", dial.ErrDenied, req.User, port)
	}
	return nil
}

func matchHost(r compiledRule, host string, ip netip.Addr, isIP bool) bool {
	if isIP {
		for _, p := range r.cidrs {
			if p.Contains(ip.Unmap()) {
				return true
			}
		}
	}
	for _, g := range r.hosts {
		if ok, _ := path.Match(g, host); ok {
			return true
		}
	}
	return false
}

func matchPort(r compiledRule, port uint16) bool {
	for _, pr := range r.ports {
		if port >= pr[0] && port <= pr[1] {
			return true
		}
	}
	return false
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func isPrivate(ip netip.Addr) bool {
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() || cgnat.Contains(ip)
}

// guardPublic refuses private addresses after resolution.
func guardPublic(ip netip.Addr) error {
	if isPrivate(ip) {
		return fmt.Errorf("%w: resolves to private address %s", dial.ErrDenied, ip)
	}
	return nil
}

func isLoopbackClient(a net.Addr) bool {
	if a == nil {
		return true // in-process callers
	}
	ip, err := netip.ParseAddr(clientIP(a))
	return err == nil && ip.Unmap().IsLoopback()
}
