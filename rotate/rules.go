package rotate

import (
	"errors"
	"fmt"
	"time"

	"github.com/hopper-proxy/hopper/dial"
)

// ErrBadHostPattern is wrapped by ParseHostPattern failures.
var ErrBadHostPattern = dial.ErrBadHostPattern

// HostPattern matches target host names for rules: a glob or a /regex/ (see
// dial.HostPattern, whose syntax --mitm-hosts shares).
type HostPattern = dial.HostPattern

// ParseHostPattern compiles a rule's host pattern.
func ParseHostPattern(s string) (HostPattern, error) { return dial.ParseHostPattern(s) }

// PoolSpec is one named pool of the YAML config:
//
//	pools:
//	  residential: { upstreams: [lists/resi.txt], policy: round-robin }
type PoolSpec struct {
	// Upstreams are the pool's list sources: files and http(s) URLs, as
	// --upstreams takes them ("direct" and "direct://ADDR" stand for
	// themselves).
	Upstreams []string `yaml:"upstreams"`
	// Policy chooses among the pool's healthy upstreams; empty means the
	// global policy (Config.Policy), else round robin.
	Policy Policy `yaml:"policy"`
}

// Rule sends the targets whose host matches to a named pool:
//
//	rules:
//	  - { host: "*.shop.example", pool: residential, min-interval: 2s, reserve: true }
//	  - { host: "*", pool: datacenter }
//
// The first matching rule wins.
type Rule struct {
	// Host is a HostPattern: a glob, or a regular expression between
	// slashes.
	Host string `yaml:"host"`
	// Pool names an entry of the config's pools.
	Pool string `yaml:"pool"`
	// Policy overrides the pool's policy for these targets; empty keeps it.
	Policy Policy `yaml:"policy"`
	// Retries overrides Config.Retries for these targets: how many more
	// upstreams to try after the first fails (0: none). Nil keeps the
	// pool's.
	Retries *int `yaml:"retries"`
	// MinInterval keeps an upstream from being used for the same target
	// host again within this time; a request that finds every upstream busy
	// waits up to Config.MaxQueueWait for the soonest, then fails with
	// ErrQueueWait (503 no-upstream). A sticky session waits for its own
	// upstream. Zero means no minimum.
	MinInterval time.Duration `yaml:"min-interval"`
	// Reserve gives each new connection to a matching host an exit that no
	// other connection, on any instance sharing the store (--state), holds
	// for that host: two workers scraping one site never share an exit at
	// the same time. The reservation ends with the connection (its
	// Outbound's Done), or by Config.ReserveTTL if its instance dies. When
	// every exit is taken, the request waits up to Config.MaxQueueWait for
	// one, then fails with ErrReserved (503 no-upstream). A sticky session
	// waits for its own exit. An exit is an upstream entry: a provider
	// gateway counts as one exit whatever sessions it hands out. Hosts are
	// compared as min-interval compares them (lower case, no port).
	Reserve bool `yaml:"reserve"`
}

// ErrBadRule is wrapped by rule and pool validation failures.
var ErrBadRule = errors.New("bad pool or rule")

// validate checks one rule against the pools it may name.
func (r *Rule) validate(i int, pools map[string]PoolSpec) (HostPattern, error) {
	var errs []error
	pat, err := ParseHostPattern(r.Host)
	if err != nil {
		errs = append(errs, err)
	}
	if _, ok := pools[r.Pool]; !ok {
		errs = append(errs, fmt.Errorf("unknown pool %q", r.Pool))
	}
	if err := r.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if r.Retries != nil && (*r.Retries < 0 || *r.Retries > maxRetries) {
		errs = append(errs, fmt.Errorf("retries %d outside 0..%d", *r.Retries, maxRetries))
	}
	if r.MinInterval < 0 {
		errs = append(errs, errors.New("negative min-interval"))
	}
	if err := errors.Join(errs...); err != nil {
		return pat, fmt.Errorf("%w: rule %d (host %q): %w", ErrBadRule, i+1, r.Host, err)
	}
	return pat, nil
}
