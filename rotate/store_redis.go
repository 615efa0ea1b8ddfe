package rotate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"
)

// Defaults for zero RedisConfig fields.
const (
	DefaultStoreTimeout = 250 * time.Millisecond
	// While degraded, the background health check (run by Subscribe) tries
	// the server this often; request paths fail fast meanwhile and try
	// themselves only when no health check has run for requestProbeEvery.
	healthCheckEvery  = 500 * time.Millisecond
	requestProbeEvery = 5 * time.Second
	getManyChunk      = 512
)

// RedisConfig configures a RedisStore.
type RedisConfig struct {
	// URL is redis://[user:pass@]host:port/db or rediss://... (TLS). Query
	// options go-redis understands (pool_size, client_name...) are
	// honoured, except its timeouts: Timeout bounds every call, and a
	// timeout=DURATION option in the URL overrides Timeout.
	URL string
	// Prefix namespaces every key and channel ("PREFIX:key"); "" means
	// DefaultStatePrefix.
	Prefix string
	// Timeout bounds each call (and each dial). Zero means
	// DefaultStoreTimeout; keep it short: a request waits at most this long
	// before the store is declared degraded and skipped.
	Timeout time.Duration
	// TLS is the base configuration for rediss:// (root CAs, client
	// certificates); nil means the system roots.
	TLS *tls.Config
	// Logger receives reachability changes, once each. Nil means none.
	Logger *zap.Logger

	rawKeys bool // no prefix: keys as given (upstream list sources)
}

// RedisStore is a Store on a Redis server (go-redis v9), shared by every
// hopper that uses the same server, database and prefix. Leases are SET NX
// PX with an owner token and released by compare-and-delete in a Lua
// script; counters are INCRBY with PEXPIRE in one transaction; events are
// pub/sub.
//
// It never makes a request wait on an unreachable server: a call that fails
// to reach it (or times out) marks the store degraded (logged once), and
// calls then fail at once with ErrStoreUnavailable while Subscribe's health
// check (every 500ms) tries the server; when it answers, the store is
// healthy again (logged once) and subscribers are told to resynchronise.
type RedisStore struct {
	c       *redis.Client
	prefix  string // "hopper:"; "" for raw keys
	timeout time.Duration
	addr    string
	log     *zap.Logger

	acquire, renew, release *redis.Script

	down      atomic.Bool
	since     atomic.Int64 // unix nanoseconds the store went down
	lastErr   atomic.Pointer[errorRecord]
	failures  atomic.Uint64
	lastProbe atomic.Int64  // unix nanoseconds of the last attempt while down
	recovered atomic.Uint64 // bumps each time the store comes back
}

var _ Store = (*RedisStore)(nil)

// Lua: SET NX PX over the keys in order; {index, 0} for the one taken, or
// {-1, soonest PTTL}.
const acquireLua = `
local soonest = -1
for i, k in ipairs(KEYS) do
  if redis.call('SET', k, ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {i - 1, 0}
  end
  local t = redis.call('PTTL', k)
  if t < 0 then t = 0 end
  if soonest < 0 or t < soonest then soonest = t end
end
return {-1, soonest}`

// Lua: extend the owner's hold, or take the key again if it is free.
const renewLua = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] or not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`

// Lua: compare-and-delete.
const releaseLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`

// ErrBadRedisURL is wrapped when a redis URL cannot be used.
var ErrBadRedisURL = fmt.Errorf("%w: bad redis URL", ErrBadStore)

// NewRedisStore returns a store on the server cfg.URL names. It does not
// connect; the first call does.
func NewRedisStore(cfg RedisConfig) (*RedisStore, error) {
	rawURL, urlTimeout, err := cutTimeout(cfg.URL)
	if err != nil {
		return nil, err
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		// go-redis errors may quote the URL, password included.
		return nil, fmt.Errorf("%w %s", ErrBadRedisURL, redactStoreURL(cfg.URL))
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultStatePrefix
	}
	if err := ValidateStatePrefix(prefix); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if urlTimeout > 0 {
		timeout = urlTimeout
	}
	if timeout <= 0 {
		timeout = DefaultStoreTimeout
	}
	opt.Protocol = 2 // RESP2: no push-notification machinery
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	opt.DisableIdentity = true
	opt.MaxRetries = -1 // a failed call falls back to local state; no retry storms
	opt.DialerRetries, opt.DialerRetryTimeout = 1, time.Millisecond
	opt.ContextTimeoutEnabled = true
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = timeout, timeout, timeout, timeout
	if opt.TLSConfig != nil && cfg.TLS != nil {
		t := cfg.TLS.Clone()
		t.ServerName = opt.TLSConfig.ServerName
		opt.TLSConfig = t
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	r := &RedisStore{
		c: redis.NewClient(opt), prefix: prefix + ":", timeout: timeout, addr: opt.Addr, log: log,
		acquire: redis.NewScript(acquireLua), renew: redis.NewScript(renewLua), release: redis.NewScript(releaseLua),
	}
	if cfg.rawKeys {
		r.prefix = ""
	}
	return r, nil
}

// cutTimeout takes hopper's own timeout=DURATION query option out of a
// redis URL (it overrides RedisConfig.Timeout), leaving go-redis's options.
func cutTimeout(raw string) (string, time.Duration, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", 0, fmt.Errorf("%w %s", ErrBadRedisURL, redactStoreURL(raw))
	}
	q := u.Query()
	v := q.Get("timeout")
	if v == "" {
		return raw, 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return "", 0, fmt.Errorf("%w %s: timeout=%q is not a positive duration", ErrBadRedisURL, redactStoreURL(raw), v)
	}
	q.Del("timeout")
	u.RawQuery = q.Encode()
	return u.String(), d, nil
}

// redactStoreURL hides the password of a redis URL for messages.
func redactStoreURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		if strings.Contains(s, "@") {
			return "(URL with credentials)"
		}
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

func (r *RedisStore) key(k string) string { return r.prefix + k }

// do runs op under the store's timeout and keeps its health: a call that
// cannot reach the server degrades the store; a reply (even an error reply)
// heals it. While degraded, calls fail at once.
func (r *RedisStore) do(ctx context.Context, op func(ctx context.Context) error) error {
	if r.down.Load() && !r.mayProbe(requestProbeEvery) {
		return r.unavailable()
	}
	started := time.Now().UnixNano()
	octx, cancel := context.WithTimeout(ctx, r.timeout)
	err := op(octx)
	cancel()
	var reply redis.Error
	switch {
	case err == nil || errors.As(err, &reply):
		r.up(started)
		return err
	case ctx.Err() != nil:
		// The caller gave up; that says nothing about the server.
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, ctx.Err())
	default:
		r.fail(err)
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
}

// mayProbe lets one caller through while degraded if nobody tried for every.
func (r *RedisStore) mayProbe(every time.Duration) bool {
	now := time.Now().UnixNano()
	last := r.lastProbe.Load()
	return now-last >= int64(every) && r.lastProbe.CompareAndSwap(last, now)
}

func (r *RedisStore) unavailable() error {
	if rec := r.lastErr.Load(); rec != nil {
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, rec.err)
	}
	return ErrStoreUnavailable
}

func (r *RedisStore) fail(err error) {
	r.failures.Add(1)
	r.lastErr.Store(&errorRecord{err: err, at: time.Now()})
	if r.down.Swap(true) {
		return
	}
	now := time.Now()
	r.since.Store(now.UnixNano())
	r.lastProbe.Store(now.UnixNano())
	r.log.Warn("shared state unreachable; serving from local state until it returns",
		zap.String("state", "redis"), zap.String("addr", r.addr), zap.Error(err))
}

// up heals the store after a call that started at started (UnixNano) got a
// reply. A call that began before the store went down says nothing about
// the server now: a reply racing the failure that degraded the store would
// otherwise flip it up and down again, logging both twice.
func (r *RedisStore) up(started int64) {
	if !r.down.Load() || started < r.since.Load() || !r.down.CompareAndSwap(true, false) {
		return
	}
	r.recovered.Add(1)
	r.log.Info("shared state reachable again; resynchronising",
		zap.String("state", "redis"), zap.String("addr", r.addr),
		zap.Duration("unreachable_for", time.Since(time.Unix(0, r.since.Load()))))
}

// Health reports reachability.
func (r *RedisStore) Health() StoreHealth {
	h := StoreHealth{Backend: "redis", Addr: r.addr, Shared: true, Degraded: r.down.Load(), Failures: r.failures.Load()}
	if h.Degraded {
		h.Since = time.Unix(0, r.since.Load())
		if rec := r.lastErr.Load(); rec != nil {
			h.Err = rec.err
		}
	}
	return h
}

// Get returns the value at key.
func (r *RedisStore) Get(ctx context.Context, key string) ([]byte, error) {
	var b []byte
	err := r.do(ctx, func(ctx context.Context) (err error) {
		b, err = r.c.Get(ctx, r.key(key)).Bytes()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return b, err
}

// GetMany reads keys with MGET, 512 at a time.
func (r *RedisStore) GetMany(ctx context.Context, keys []string) ([][]byte, error) {
	out := make([][]byte, 0, len(keys))
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), getManyChunk)]
		keys = keys[len(chunk):]
		full := make([]string, len(chunk))
		for i, k := range chunk {
			full[i] = r.key(k)
		}
		var vals []any
		err := r.do(ctx, func(ctx context.Context) (err error) {
			vals, err = r.c.MGet(ctx, full...).Result()
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, v := range vals {
			s, ok := v.(string)
			if !ok {
				out = append(out, nil)
				continue
			}
			out = append(out, []byte(s))
		}
	}
	return out, nil
}

// Set stores value with PX ttl.
func (r *RedisStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkWrite(value, ttl); err != nil {
		return err
	}
	return r.do(ctx, func(ctx context.Context) error {
		return r.c.Set(ctx, r.key(key), value, ttl).Err()
	})
}

// Delete removes key.
func (r *RedisStore) Delete(ctx context.Context, key string) error {
	return r.do(ctx, func(ctx context.Context) error {
		return r.c.Del(ctx, r.key(key)).Err()
	})
}

// Incr runs INCRBY and PEXPIRE in one MULTI/EXEC.
func (r *RedisStore) Incr(ctx context.Context, key string, n int64, ttl time.Duration) (int64, error) {
	if ttl <= 0 {
		return 0, ErrBadTTL
	}
	var v *redis.IntCmd
	err := r.do(ctx, func(ctx context.Context) error {
		_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			v = p.IncrBy(ctx, r.key(key), n)
			p.PExpire(ctx, r.key(key), ttl)
			return nil
		})
		return err
	})
	if err != nil {
		return 0, err
	}
	return v.Val(), nil
}

// Acquire takes the first free key in one script call.
func (r *RedisStore) Acquire(ctx context.Context, keys []string, owner string, ttl time.Duration) (int, time.Duration, error) {
	if ttl <= 0 {
		return -1, 0, ErrBadTTL
	}
	if len(keys) == 0 {
		return -1, 0, nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = r.key(k)
	}
	var res []int64
	err := r.do(ctx, func(ctx context.Context) (err error) {
		res, err = r.acquire.Run(ctx, r.c, full, owner, millis(ttl)).Int64Slice()
		return err
	})
	if err != nil {
		return -1, 0, err
	}
	if len(res) != 2 {
		return -1, 0, fmt.Errorf("state: unexpected acquire reply %v", res)
	}
	return int(res[0]), time.Duration(res[1]) * time.Millisecond, nil
}

// Renew extends or retakes owner's hold.
func (r *RedisStore) Renew(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, ErrBadTTL
	}
	var n int64
	err := r.do(ctx, func(ctx context.Context) (err error) {
		n, err = r.renew.Run(ctx, r.c, []string{r.key(key)}, owner, millis(ttl)).Int64()
		return err
	})
	return n == 1, err
}

// Release compare-and-deletes.
func (r *RedisStore) Release(ctx context.Context, key, owner string) error {
	return r.do(ctx, func(ctx context.Context) error {
		return r.release.Run(ctx, r.c, []string{r.key(key)}, owner).Err()
	})
}

// Publish sends msg on the prefixed channel.
func (r *RedisStore) Publish(ctx context.Context, channel string, msg []byte) error {
	return r.do(ctx, func(ctx context.Context) error {
		return r.c.Publish(ctx, r.key(channel), msg).Err()
	})
}

// millis is ttl in whole milliseconds, at least one (PX 0 is an error).
func millis(ttl time.Duration) int64 { return max(ttl.Milliseconds(), 1) }

// Close closes the client's connections.
func (r *RedisStore) Close() error { return r.c.Close() }
