package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/mitm"
	"github.com/hopper-proxy/hopper/rotate"
)

// validateState checks --state and --state-prefix.
func (c *serveConfig) validateState() error {
	lower := strings.ToLower(c.State)
	if lower != "memory" && !strings.HasPrefix(lower, "redis://") && !strings.HasPrefix(lower, "rediss://") {
		return fmt.Errorf("--state: invalid value %q (allowed: memory, redis://[user:pass@]host:port/db, rediss://...)", redactState(c.State))
	}
	if err := rotate.ValidateStatePrefix(c.StatePrefix); err != nil {
		return fmt.Errorf("--state-prefix: %q: 1 to 64 bytes without spaces or control characters", c.StatePrefix)
	}
	return nil
}

// openState opens the --state store: the memory store, or a Redis server
// shared with the other instances. It does not connect; a server that is
// down at start makes the store degraded, not the start fail.
func openState(cfg serveConfig, log *zap.Logger) (rotate.Store, error) {
	slog := log.With(zap.String("state", redactState(cfg.State)))
	if strings.EqualFold(cfg.State, "memory") {
		return rotate.NewMemoryStore(nil), nil
	}
	// go-redis logs through a process-wide logger of its own (reconnect
	// attempts, by default to stderr in another format); route it into ours,
	// at debug: the store logs reachability changes once itself.
	redis.SetLogger(redisLogger{slog})
	st, err := rotate.OpenStore(cfg.State, rotate.StoreOptions{Prefix: cfg.StatePrefix, Logger: slog})
	if err != nil {
		return nil, usagef("--state: %w", err)
	}
	slog.Info("sharing state", zap.String("addr", st.Health().Addr), zap.String("prefix", cfg.StatePrefix))
	return st, nil
}

// redactState hides a password in a --state URL.
func redactState(s string) string {
	if i := strings.Index(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + "…@" + s[i+1:]
		}
	}
	return s
}

// sharedIdentities is the --state store as the interceptor's shared
// identity store: rotate's not-found is mitm's.
type sharedIdentities struct{ kv rotate.KV }

var _ mitm.SharedStore = sharedIdentities{}

func (s sharedIdentities) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.kv.Get(ctx, key)
	if errors.Is(err, rotate.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", mitm.ErrSharedNotFound, err)
	}
	return v, err
}

func (s sharedIdentities) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return s.kv.Set(ctx, key, value, ttl)
}

type redisLogger struct{ log *zap.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug("redis client", zap.String("detail", fmt.Sprintf(format, v...)))
}
