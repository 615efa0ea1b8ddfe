package rotate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/hopper-proxy/hopper/dial"
)

// DefaultPoolName is the pool that takes the targets no rule matches when no
// catch-all rule is given (and more than one pool is).
const DefaultPoolName = "default"

// RouterConfig configures a Router: named pools, ordered rules, and the
// settings every pool shares. cmd/hopper decodes the YAML "pools:" and
// "rules:" blocks straight into Pools and Rules and fills the rest from
// flags.
type RouterConfig struct {
	Pools map[string]PoolSpec `yaml:"pools"`
	Rules []Rule              `yaml:"rules"`

	// Pool is the configuration of every pool (retries, timeouts, health,
	// sessions, global policy, logger); each pool's PoolSpec.Policy
	// overrides Policy.
	Pool Config `yaml:"-"`
	// Updater is the configuration of every pool's updater; Sources comes
	// from the pool's PoolSpec.Upstreams. Nil Logger means Pool.Logger.
	Updater UpdaterConfig `yaml:"-"`
	// Prober is the configuration of every pool's prober; a negative
	// Interval builds none (Router.Prober returns nil). Nil Logger means
	// Pool.Logger.
	Prober ProberConfig `yaml:"-"`
}

// ErrNoDefaultRule: more than one pool, no catch-all rule, no pool named
// "default": some targets would have nowhere to go.
var ErrNoDefaultRule = errors.New(`no route for hosts no rule matches: add a last rule { host: "*", pool: NAME } or a pool named "default"`)

// Validate checks pools and rules, failing closed on unknown policies, pools
// and patterns, unreachable rules, and hosts with no route.
func (c *RouterConfig) Validate() error {
	_, err := c.compile()
	return err
}

type compiledRule struct {
	rule Rule
	pat  HostPattern
}

func (c *RouterConfig) compile() ([]compiledRule, error) {
	var errs []error
	if len(c.Pools) == 0 {
		errs = append(errs, fmt.Errorf("%w: no pools", ErrBadRule))
	}
	for name, spec := range c.Pools {
		if name == "" || strings.ContainsAny(name, " \t\r\n") {
			errs = append(errs, fmt.Errorf("%w: bad pool name %q", ErrBadRule, name))
		}
		if len(spec.Upstreams) == 0 {
			errs = append(errs, fmt.Errorf("%w: pool %q has no upstream sources", ErrBadRule, name))
		}
		for _, s := range spec.Upstreams {
			if s == "" {
				errs = append(errs, fmt.Errorf("%w: pool %q has an empty source", ErrBadRule, name))
			}
		}
		if err := spec.Policy.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%w: pool %q: %w", ErrBadRule, name, err))
		}
	}
	rules := make([]compiledRule, 0, len(c.Rules))
	catchAll := -1
	for i := range c.Rules {
		pat, err := c.Rules[i].validate(i, c.Pools)
		if err != nil {
			errs = append(errs, err)
		}
		if catchAll >= 0 {
			errs = append(errs, fmt.Errorf("%w: rule %d (host %q) comes after the catch-all rule %d and is never used",
				ErrBadRule, i+1, c.Rules[i].Host, catchAll+1))
		}
		if pat.MatchesAll() && catchAll < 0 {
			catchAll = i
		}
		rules = append(rules, compiledRule{rule: c.Rules[i], pat: pat})
	}
	if _, hasDefault := c.Pools[DefaultPoolName]; catchAll < 0 && !hasDefault && len(c.Pools) > 1 {
		errs = append(errs, ErrNoDefaultRule)
	}
	if err := c.Pool.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Prober.Validate(); err != nil {
		errs = append(errs, err)
	}
	up := c.Updater
	up.Sources = []string{"x"}
	if err := up.Validate(); err != nil {
		errs = append(errs, err)
	}
	return rules, errors.Join(errs...)
}

// Router is a dial.Dialer over several named pools: the first rule whose
// host pattern matches a request's target picks the pool, and may change its
// policy, retries and min-interval. Targets no rule matches go to the pool
// named "default", or the only pool. Each pool has its own sources, updater,
// prober, health and sticky sessions. NewRouter starts nothing: Run is the
// caller's to start (under its errgroup) and stop.
type Router struct {
	pools map[string]*routed
	names []string // sorted
	rules []route
	def   *routed
	log   *zap.Logger
	store Store
}

type routed struct {
	name    string
	pool    *Pool
	updater *Updater
	prober  *Prober // nil when probing is off
	opts    dialOpts
}

type route struct {
	pat  HostPattern
	pool *routed
	opts dialOpts
}

var _ dial.Dialer = (*Router)(nil)

// NewRouter builds the pools (empty until Reload or Run loads their lists)
// and compiles the rules, or returns cfg.Validate's error.
func NewRouter(cfg RouterConfig) (*Router, error) {
	rules, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	log := cfg.Pool.Logger
	if log == nil {
		log = zap.NewNop()
	}
	// One fallback store for every pool: reservations are per exit and
	// host, whichever pool the exit is in.
	local := NewMemoryStore(cfg.Pool.Clock)
	store := cfg.Pool.Store
	if store == nil {
		store = local
	}
	r := &Router{pools: make(map[string]*routed, len(cfg.Pools)), log: log, store: store}
	for name, spec := range cfg.Pools {
		plog := log.With(zap.String("pool", name))
		pc := cfg.Pool
		pc.Policy = spec.Policy.or(cfg.Pool.Policy)
		pc.Logger = plog
		pc.Store, pc.Name = store, name
		pool, err := newPool(pc, nil, local)
		if err != nil {
			return nil, err
		}
		uc := cfg.Updater
		uc.Sources = slices.Clone(spec.Upstreams)
		if uc.Logger == nil {
			uc.Logger = plog
		} else {
			uc.Logger = uc.Logger.With(zap.String("pool", name))
		}
		up, err := NewUpdater(pool, uc)
		if err != nil {
			return nil, err
		}
		rp := &routed{name: name, pool: pool, updater: up, opts: pool.defaultOpts()}
		if cfg.Prober.Interval >= 0 {
			prc := cfg.Prober
			if prc.Logger == nil {
				prc.Logger = plog
			} else {
				prc.Logger = prc.Logger.With(zap.String("pool", name))
			}
			if rp.prober, err = NewProber(pool, prc); err != nil {
				return nil, err
			}
		}
		r.pools[name] = rp
		r.names = append(r.names, name)
	}
	slices.Sort(r.names)
	for _, cr := range rules {
		rp := r.pools[cr.rule.Pool]
		o := rp.opts
		o.policy = cr.rule.Policy.or(o.policy)
		if cr.rule.Retries != nil {
			o.attempts = 1 + *cr.rule.Retries
		}
		o.minInterval = cr.rule.MinInterval
		o.reserve = cr.rule.Reserve
		r.rules = append(r.rules, route{pat: cr.pat, pool: rp, opts: o})
	}
	if rp, ok := r.pools[DefaultPoolName]; ok {
		r.def = rp
	} else if len(r.names) == 1 {
		r.def = r.pools[r.names[0]]
	}
	return r, nil
}

// Dial routes req to its pool by the first matching rule and dials there.
func (r *Router) Dial(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
	rp, o := r.route(targetHost(req.Target))
	if rp == nil {
		return nil, &dial.Error{Target: req.Target, Err: fmt.Errorf("%w: no rule matches and no default pool", dial.ErrNoUpstream)}
	}
	return rp.pool.dial(ctx, req, o)
}

func (r *Router) route(host string) (*routed, dialOpts) {
	for _, rt := range r.rules {
		if rt.pat.Match(host) {
			return rt.pool, rt.opts
		}
	}
	if r.def == nil {
		return nil, dialOpts{}
	}
	return r.def, r.def.opts
}

// Route names the pool a target (host:port or host) goes to and the 0-based
// index of the rule that sent it there, -1 for the default route; "" if none.
func (r *Router) Route(target string) (pool string, rule int) {
	host := targetHost(target)
	for i, rt := range r.rules {
		if rt.pat.Match(host) {
			return rt.pool.name, i
		}
	}
	if r.def == nil {
		return "", -1
	}
	return r.def.name, -1
}

// Run runs every pool's updater, prober and state upkeep (Pool.Sync) until
// ctx ends, and returns nil then (or the first failure of one of them).
func (r *Router) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, name := range r.names {
		rp := r.pools[name]
		g.Go(func() error { return rp.updater.Run(ctx) })
		g.Go(func() error { return rp.pool.Sync(ctx) })
		if rp.prober != nil {
			g.Go(func() error { return rp.prober.Run(ctx) })
		}
	}
	return g.Wait()
}

// Reload reloads every pool's lists now (on SIGHUP, and once before serving)
// and joins their errors; see Updater.Reload.
func (r *Router) Reload(ctx context.Context) error {
	var errs []error
	for _, name := range r.names {
		if err := r.pools[name].updater.Reload(ctx); err != nil {
			errs = append(errs, fmt.Errorf("pool %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Pool returns the named pool, or nil.
func (r *Router) Pool(name string) *Pool {
	if rp, ok := r.pools[name]; ok {
		return rp.pool
	}
	return nil
}

// Prober returns the named pool's prober, or nil (no such pool, or probing
// off).
func (r *Router) Prober(name string) *Prober {
	if rp, ok := r.pools[name]; ok {
		return rp.prober
	}
	return nil
}

// PoolNames lists the pools, sorted.
func (r *Router) PoolNames() []string { return slices.Clone(r.names) }

// PoolStatus is one pool in a status listing.
type PoolStatus struct {
	Name      string
	Policy    Policy
	Healthy   int
	Upstreams []UpstreamStatus
}

// Status lists every pool, sorted by name, with its upstreams' stats.
func (r *Router) Status() []PoolStatus {
	out := make([]PoolStatus, 0, len(r.names))
	for _, name := range r.names {
		rp := r.pools[name]
		st := rp.pool.Status()
		out = append(out, PoolStatus{Name: name, Policy: rp.opts.policy, Healthy: len(rp.pool.Healthy()), Upstreams: st})
	}
	return out
}

// StateHealth reports the store the pools share (RouterConfig.Pool.Store,
// or the router's memory store): for /healthz detail and metrics, whether
// it is shared and whether it is degraded (unreachable, hopper serving from
// local state).
func (r *Router) StateHealth() StoreHealth { return r.store.Health() }

// ReportFailure charges the upstream labelled label, in whichever pool holds
// it, with a failure of its own seen after the dial (see Pool.ReportFailure).
func (r *Router) ReportFailure(ctx context.Context, label string, err error) bool {
	found := false
	for _, name := range r.names {
		if r.pools[name].pool.ReportFailure(ctx, label, err) {
			found = true
		}
	}
	return found
}

// Close closes every pool's kept connections and updater. A store given in
// RouterConfig.Pool.Store is its opener's to close.
func (r *Router) Close() error {
	var errs []error
	for _, name := range r.names {
		errs = append(errs, r.pools[name].pool.Close(), r.pools[name].updater.Close())
	}
	return errors.Join(errs...)
}
