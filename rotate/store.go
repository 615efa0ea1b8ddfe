package rotate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Store is the state several hopper instances share (--state): the rotation
// cursor, upstream health, sticky sessions, min-interval slots,
// reservations, and blobs other packages keep (the MITM identity store). It
// is a handful of primitives with Redis semantics; what the keys mean is
// decided by the pool (see shared.go). Two implementations pass one contract
// suite: MemoryStore (the default: one process, today's behaviour) and
// RedisStore (shared by every instance that names the same server and
// prefix).
//
// Every key expires: each write takes a positive TTL, so nothing grows
// without bound. Keys and channels are relative; an implementation
// namespaces them (RedisStore under its prefix). Calls never block longer
// than the store's own short timeout; a failure to reach a shared store
// wraps ErrStoreUnavailable, and callers then carry on from local state.
type Store interface {
	KV
	// GetMany returns the values of keys in order, nil for a missing one.
	GetMany(ctx context.Context, keys []string) ([][]byte, error)
	// Incr adds n to the counter at key (a missing key counts as zero) and
	// returns the new value; the key then expires ttl from now.
	Incr(ctx context.Context, key string, n int64, ttl time.Duration) (int64, error)

	// Acquire takes the first free key of keys, in order, for owner until
	// ttl from now (SET NX PX), and returns its index. When every key is
	// held it returns -1 and the time until the soonest of them expires by
	// itself (it may be released earlier).
	Acquire(ctx context.Context, keys []string, owner string, ttl time.Duration) (int, time.Duration, error)
	// Renew extends owner's hold on key to ttl from now, taking it again if
	// it is free (after an expiry or a lost store); false when another owner
	// holds it.
	Renew(ctx context.Context, key, owner string, ttl time.Duration) (bool, error)
	// Release frees key if owner holds it (compare-and-delete); another
	// owner's hold is left alone.
	Release(ctx context.Context, key, owner string) error

	// Publish sends msg to the channel's subscribers, in every instance.
	Publish(ctx context.Context, channel string, msg []byte) error
	// Subscribe calls fn with each message published on channel until ctx
	// ends, and returns nil then. It calls fn(nil) when the subscription is
	// established and again whenever it is re-established after an
	// interruption (store unreachable, reconnect): messages may have been
	// lost, so the subscriber should resynchronise. fn runs in Subscribe's
	// goroutine, one call at a time.
	Subscribe(ctx context.Context, channel string, fn func(msg []byte)) error

	// Health reports what the store is and whether it is reachable.
	Health() StoreHealth
	// Close releases the store's connections. Calls after Close fail.
	Close() error
}

// KV is the part of a Store that other packages can use as a plain
// key-value store with TTLs (the MITM identity store keeps a profile and a
// bounded cookie jar per identity in it). A consumer declares the same three
// methods as its own interface, so it does not import this package.
type KV interface {
	// Get returns the value at key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value at key until ttl from now; ttl must be positive and
	// value at most MaxValueSize bytes.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// MaxValueSize bounds a value a Store keeps (1 MiB).
const MaxValueSize = 1 << 20

// Store errors.
var (
	// ErrNotFound: no value at the key (never set, deleted or expired).
	ErrNotFound = errors.New("state: not found")
	// ErrStoreUnavailable: a shared store could not be reached in time, or
	// has been unreachable recently; the caller should use local state.
	ErrStoreUnavailable = errors.New("state: shared store unavailable")
	// ErrBadStore: a --state or --state-prefix value hopper cannot use.
	ErrBadStore = errors.New("bad state store")
	// ErrBadTTL: a write without a positive TTL.
	ErrBadTTL = errors.New("state: TTL must be positive")
	// ErrValueTooLarge: a value over MaxValueSize.
	ErrValueTooLarge = errors.New("state: value too large")
)

// StoreHealth is a store's self-report, for /healthz and metrics.
type StoreHealth struct {
	// Backend is "memory" or "redis"; Addr the server (host:port, no
	// credentials) of a shared store.
	Backend string
	Addr    string
	// Shared reports a store other instances see.
	Shared bool
	// Degraded is set while the shared store is unreachable: hopper then
	// serves from local state and resynchronises when it returns. Since is
	// when it became unreachable and Err why.
	Degraded bool
	Since    time.Time
	Err      error
	// Failures counts operations that could not reach the store.
	Failures uint64
}

// DefaultStatePrefix namespaces a shared store's keys (--state-prefix).
const DefaultStatePrefix = "hopper"

// StoreOptions are what OpenStore needs besides the --state value.
type StoreOptions struct {
	// Prefix (--state-prefix) namespaces keys and channels; "" means
	// DefaultStatePrefix. Instances that should act as one use the same.
	Prefix string
	// Timeout bounds every call to a shared store; zero means
	// DefaultStoreTimeout.
	Timeout time.Duration
	// Clock tells the memory store's time; nil means the system clock.
	Clock Clock
	// Logger receives the store's state changes (unreachable, back), once
	// each. Nil means none.
	Logger *zap.Logger
}

// OpenStore opens the store a --state value names: "memory" (or "") for a
// MemoryStore, "redis://[user:pass@]host:port/db" or "rediss://..." for a
// RedisStore. It does not connect: a shared store that is down at start is
// degraded, not an error.
func OpenStore(spec string, opts StoreOptions) (Store, error) {
	switch lower := strings.ToLower(spec); {
	case lower == "" || lower == "memory":
		return NewMemoryStore(opts.Clock), nil
	case strings.HasPrefix(lower, "redis://") || strings.HasPrefix(lower, "rediss://"):
		return NewRedisStore(RedisConfig{URL: spec, Prefix: opts.Prefix, Timeout: opts.Timeout, Logger: opts.Logger})
	default:
		return nil, fmt.Errorf("%w: %q: want memory, redis://host:port/db or rediss://host:port/db", ErrBadStore, redactStoreURL(spec))
	}
}

// ValidateStatePrefix reports a prefix that cannot namespace keys: empty,
// longer than 64 bytes, or with white space or control characters.
func ValidateStatePrefix(prefix string) error {
	if prefix == "" || len(prefix) > 64 {
		return fmt.Errorf("%w: prefix must be 1 to 64 bytes", ErrBadStore)
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w: prefix %q has white space or a control character", ErrBadStore, prefix)
		}
	}
	return nil
}

// checkWrite vets a value and TTL the same way in every implementation.
func checkWrite(value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return ErrBadTTL
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrValueTooLarge, len(value), MaxValueSize)
	}
	return nil
}
