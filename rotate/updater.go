package rotate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// UpdaterConfig configures an Updater.
type UpdaterConfig struct {
	// Sources are list files, http(s) URLs and Redis keys
	// (redis://host:port/db?key=NAME, see redisSource), read in order;
	// their entries are concatenated and deduplicated. "direct" and
	// "direct://ADDR" stand for themselves. At least one is required.
	Sources []string
	// Interval is the time between reloads in Run. Zero means Run reloads
	// only at start; Reload works at any time.
	Interval time.Duration
	// Client fetches URL sources. Nil means a client of its own that honours
	// the proxy environment variables, keeps no idle connections and gives
	// up on a fetch after FetchTimeout.
	Client *http.Client
	// FetchTimeout bounds one fetch by the default client (and one read of
	// a Redis source). Zero means 30s.
	FetchTimeout time.Duration
	// MaxListSize bounds one source's size in bytes. Zero means 64 MiB.
	MaxListSize int64
	// Logger receives reload results and skipped lines. Nil means none.
	Logger *zap.Logger
}

// Validate reports a config the updater cannot run with.
func (c *UpdaterConfig) Validate() error {
	var errs []error
	if len(c.Sources) == 0 {
		errs = append(errs, fmt.Errorf("%w: no upstream sources", ErrBadConfig))
	}
	for _, s := range c.Sources {
		if s == "" {
			errs = append(errs, fmt.Errorf("%w: empty source", ErrBadConfig))
		}
		if isRedisSource(s) {
			if _, _, _, err := parseRedisSource(s); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if c.Interval < 0 || c.FetchTimeout < 0 || c.MaxListSize < 0 {
		errs = append(errs, fmt.Errorf("%w: negative interval, fetch timeout or list size", ErrBadConfig))
	}
	return errors.Join(errs...)
}

func (c *UpdaterConfig) maxListSize() int64 {
	if c.MaxListSize == 0 {
		return 64 << 20
	}
	return c.MaxListSize
}

// maxLoggedLines bounds the bad lines logged per source and reload.
const maxLoggedLines = 20

// ErrNoEntries: a reload found no usable upstream in any source; the pool
// was left as it was.
var ErrNoEntries = errors.New("no usable upstream in any source")

// Updater loads a pool's upstream lists: at start, every Interval, and on
// demand. A source that fails or yields nothing keeps its entries from the
// last good load, and a reload that yields nothing at all leaves the pool
// untouched. It starts no goroutine: Run is the caller's to start and stop.
type Updater struct {
	pool   *Pool
	cfg    UpdaterConfig
	log    *zap.Logger
	client *http.Client

	mu     sync.Mutex             // serialises reloads
	last   map[string][]*Upstream // last good entries per source
	loaded atomic.Bool            // a reload has published
	redis  map[string]*redisSource
}

// NewUpdater returns an updater for pool, or cfg.Validate's error.
func NewUpdater(pool *Pool, cfg UpdaterConfig) (*Updater, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u := &Updater{pool: pool, cfg: cfg, log: cfg.Logger, client: cfg.Client, last: make(map[string][]*Upstream),
		redis: make(map[string]*redisSource)}
	if u.log == nil {
		u.log = zap.NewNop()
	}
	timeout := cfg.FetchTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	for _, src := range cfg.Sources {
		if !isRedisSource(src) || u.redis[src] != nil {
			continue
		}
		rs, err := newRedisSource(src, timeout, u.log.With(zap.String("source", SourceLabel(src))))
		if err != nil {
			_ = u.Close()
			return nil, err
		}
		u.redis[src] = rs
	}
	if u.client == nil {
		u.client = &http.Client{
			Timeout: timeout,
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				DisableKeepAlives:   true,
				TLSHandshakeTimeout: 10 * time.Second,
			},
		}
	}
	return u, nil
}

// Run reloads at start (unless a Reload already succeeded), then every
// Interval and whenever a Redis source's channel announces a change, until
// ctx ends, when it returns nil. Each reload's outcome is logged; a failed
// one keeps the pool as it was.
func (u *Updater) Run(ctx context.Context) error {
	if !u.loaded.Load() {
		_ = u.Reload(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	notify := make(chan struct{}, 1)
	for _, rs := range u.redis {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs.watch(ctx, func() {
				select {
				case notify <- struct{}{}:
				default:
				}
			})
		}()
	}
	var tick <-chan time.Time
	if u.cfg.Interval > 0 {
		t := time.NewTicker(u.cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			_ = u.Reload(ctx)
		case <-notify:
			_ = u.Reload(ctx)
		}
	}
}

// Close releases the connections of Redis sources. Reload fails on them
// afterwards.
func (u *Updater) Close() error {
	var errs []error
	for _, rs := range u.redis {
		errs = append(errs, rs.store.Close())
	}
	return errors.Join(errs...)
}

// Reload reads every source now and publishes the result to the pool
// (cmd/hopper calls it on SIGHUP). It logs what it found, bad lines with
// file:line included, so callers need not log its error again. The error is
// nil when every source loaded; otherwise it joins the sources' failures and
// wraps ErrNoEntries if the pool was left untouched. ctx bounds the fetches.
func (u *Updater) Reload(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var all []*Upstream
	var errs []error
	for _, src := range u.cfg.Sources {
		label := SourceLabel(src)
		ups, lineErrs, err := u.loadSource(ctx, src)
		u.logLineErrors(label, lineErrs)
		if err == nil && len(ups) == 0 {
			err = fmt.Errorf("%w: %s", ErrEmptyList, label)
		}
		if err != nil {
			errs = append(errs, err)
			ups = u.last[src]
			u.log.Warn("upstream source failed; keeping its previous entries",
				zap.String("source", label), zap.Int("kept", len(ups)), zap.Error(err))
		} else {
			u.last[src] = ups
		}
		all = append(all, ups...)
	}
	if len(all) == 0 {
		errs = append(errs, ErrNoEntries)
		u.log.Warn("reload found no usable upstream; keeping the previous pool",
			zap.Int("pool", u.pool.Len()))
		return errors.Join(errs...)
	}
	st := u.pool.Replace(all)
	u.loaded.Store(true)
	u.log.Info("upstreams loaded", zap.Int("total", u.pool.Len()), zap.Int("added", st.Added),
		zap.Int("removed", st.Removed), zap.Int("duplicates", st.Duplicates), zap.Int("failed_sources", len(errs)))
	return errors.Join(errs...)
}

func (u *Updater) logLineErrors(label string, lineErrs []error) {
	for i, err := range lineErrs {
		if i == maxLoggedLines {
			u.log.Warn("more bad upstream lines skipped", zap.String("source", label),
				zap.Int("not_shown", len(lineErrs)-maxLoggedLines))
			return
		}
		u.log.Warn("bad upstream line skipped", zap.Error(err))
	}
}
