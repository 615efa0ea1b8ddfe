package rotate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// redisSource is an upstream list kept in a Redis string:
//
//	redis://[user:pass@]host:port/db?key=upstreams[&channel=NAME]
//
// (or rediss://). The key holds the list text, one entry per line, as a
// file would. Updater reloads it every Interval and whenever anything is
// published on the channel (default: the key's name), e.g.
//
//	redis-cli -x SET upstreams < list.txt && redis-cli PUBLISH upstreams reload
//
// Keys and channel are used as given, without the --state-prefix.
type redisSource struct {
	store   *RedisStore
	key     string
	channel string
}

// isRedisSource reports a source naming a Redis key.
func isRedisSource(src string) bool {
	lower := strings.ToLower(src)
	return strings.HasPrefix(lower, "redis://") || strings.HasPrefix(lower, "rediss://")
}

// ErrBadSource is wrapped when a list source cannot be used as written.
var ErrBadSource = fmt.Errorf("%w: bad upstream source", ErrBadConfig)

// parseRedisSource splits src into the server's URL, the key and the
// channel, checking that go-redis accepts the URL.
func parseRedisSource(src string) (server, key, channel string, err error) {
	u, err := url.Parse(src)
	if err != nil || u.Host == "" {
		return "", "", "", fmt.Errorf("%w: %s: want redis://host:port/db?key=NAME", ErrBadSource, SourceLabel(src))
	}
	q := u.Query()
	key, channel = q.Get("key"), q.Get("channel")
	if key == "" {
		return "", "", "", fmt.Errorf("%w: %s: no key=NAME naming the list", ErrBadSource, SourceLabel(src))
	}
	if channel == "" {
		channel = key
	}
	q.Del("key")
	q.Del("channel")
	u.RawQuery = q.Encode()
	if _, err := redis.ParseURL(u.String()); err != nil {
		return "", "", "", fmt.Errorf("%w: %s: not a redis URL go-redis accepts", ErrBadSource, SourceLabel(src))
	}
	return u.String(), key, channel, nil
}

// newRedisSource prepares (without connecting) the source's client.
func newRedisSource(src string, timeout time.Duration, log *zap.Logger) (*redisSource, error) {
	server, key, channel, err := parseRedisSource(src)
	if err != nil {
		return nil, err
	}
	st, err := NewRedisStore(RedisConfig{URL: server, Timeout: timeout, Logger: log, rawKeys: true})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadSource, SourceLabel(src), err)
	}
	return &redisSource{store: st, key: key, channel: channel}, nil
}

// open reads the list, failing with ErrListTooLarge past limit.
func (s *redisSource) open(ctx context.Context, label string, limit int64) (io.ReadCloser, error) {
	b, err := s.store.Get(ctx, s.key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s", ErrListTooLarge, label)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// watch calls reload whenever the source's channel gets a message or its
// subscription is re-established (the list may have changed meanwhile),
// until ctx ends.
func (s *redisSource) watch(ctx context.Context, reload func()) {
	first := true
	_ = s.store.Subscribe(ctx, s.channel, func(msg []byte) {
		if msg == nil && first {
			first = false // the initial load covers it
			return
		}
		reload()
	})
}
