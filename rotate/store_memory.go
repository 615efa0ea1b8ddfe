package rotate

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// MemoryStore is the Store of a single process: a map with expiry times and
// in-process channels. It is the default (--state memory), the fallback a
// pool uses for reservations while a shared store is unreachable, and the
// reference the shared implementations are tested against. Expired keys are
// dropped when read and swept when the map has doubled since the last
// sweep, so it needs no goroutine. The zero value is not usable; call
// NewMemoryStore.
type MemoryStore struct {
	clock Clock

	mu      sync.Mutex
	vals    map[string]memValue
	sweepAt int
	subs    map[string]map[*memSub]struct{}
	closed  bool
}

type memValue struct {
	b   []byte
	exp time.Time
}

// memSub is one Subscribe call's mailbox. A publisher never blocks on it:
// when it is full the message is dropped and the subscriber told to
// resynchronise, as after a lost connection.
type memSub struct {
	ch   chan []byte
	lost chan struct{} // size 1
}

const memSubQueue = 256

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store telling time by clock (nil: the
// system clock).
func NewMemoryStore(clock Clock) *MemoryStore {
	return &MemoryStore{clock: clockOr(clock), vals: make(map[string]memValue), subs: make(map[string]map[*memSub]struct{})}
}

// getLocked returns the live value at key, dropping it if it has expired.
func (m *MemoryStore) getLocked(key string, now time.Time) (memValue, bool) {
	v, ok := m.vals[key]
	if !ok {
		return memValue{}, false
	}
	if !now.Before(v.exp) {
		delete(m.vals, key)
		return memValue{}, false
	}
	return v, true
}

func (m *MemoryStore) putLocked(key string, b []byte, exp, now time.Time) {
	m.vals[key] = memValue{b: b, exp: exp}
	if len(m.vals) < max(m.sweepAt, 1024) {
		return
	}
	for k, v := range m.vals {
		if !now.Before(v.exp) {
			delete(m.vals, k)
		}
	}
	m.sweepAt = 2 * len(m.vals)
}

func (m *MemoryStore) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return fmt.Errorf("%w: store closed", ErrStoreUnavailable)
	}
	return nil
}

// Get returns a copy of the value at key.
func (m *MemoryStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	v, ok := m.getLocked(key, m.clock.Now())
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return append([]byte(nil), v.b...), nil
}

// GetMany returns copies of the values at keys, nil for missing ones.
func (m *MemoryStore) GetMany(ctx context.Context, keys []string) ([][]byte, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	now := m.clock.Now()
	out := make([][]byte, len(keys))
	for i, k := range keys {
		if v, ok := m.getLocked(k, now); ok {
			out[i] = append([]byte(nil), v.b...)
		}
	}
	return out, nil
}

// Set stores a copy of value.
func (m *MemoryStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkWrite(value, ttl); err != nil {
		return err
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	now := m.clock.Now()
	m.putLocked(key, append([]byte(nil), value...), now.Add(ttl), now)
	return nil
}

// Delete removes key.
func (m *MemoryStore) Delete(ctx context.Context, key string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	delete(m.vals, key)
	return nil
}

// Incr adds n to the decimal counter at key.
func (m *MemoryStore) Incr(ctx context.Context, key string, n int64, ttl time.Duration) (int64, error) {
	if ttl <= 0 {
		return 0, ErrBadTTL
	}
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	now := m.clock.Now()
	var cur int64
	if v, ok := m.getLocked(key, now); ok {
		var err error
		if cur, err = strconv.ParseInt(string(v.b), 10, 64); err != nil {
			return 0, fmt.Errorf("state: %s holds no counter", key)
		}
	}
	cur += n
	m.putLocked(key, strconv.AppendInt(nil, cur, 10), now.Add(ttl), now)
	return cur, nil
}

// Acquire takes the first free key.
func (m *MemoryStore) Acquire(ctx context.Context, keys []string, owner string, ttl time.Duration) (int, time.Duration, error) {
	if ttl <= 0 {
		return -1, 0, ErrBadTTL
	}
	if err := m.lock(); err != nil {
		return -1, 0, err
	}
	defer m.mu.Unlock()
	now := m.clock.Now()
	soonest := time.Duration(-1)
	for i, k := range keys {
		v, held := m.getLocked(k, now)
		if !held {
			m.putLocked(k, []byte(owner), now.Add(ttl), now)
			return i, 0, nil
		}
		if left := v.exp.Sub(now); soonest < 0 || left < soonest {
			soonest = left
		}
	}
	return -1, max(soonest, 0), nil
}

// Renew extends or retakes owner's hold.
func (m *MemoryStore) Renew(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, ErrBadTTL
	}
	if err := m.lock(); err != nil {
		return false, err
	}
	defer m.mu.Unlock()
	now := m.clock.Now()
	if v, held := m.getLocked(key, now); held && string(v.b) != owner {
		return false, nil
	}
	m.putLocked(key, []byte(owner), now.Add(ttl), now)
	return true, nil
}

// Release frees key if owner holds it.
func (m *MemoryStore) Release(ctx context.Context, key, owner string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if v, held := m.getLocked(key, m.clock.Now()); held && string(v.b) == owner {
		delete(m.vals, key)
	}
	return nil
}

// Publish hands msg to the channel's subscribers without waiting for them.
func (m *MemoryStore) Publish(ctx context.Context, channel string, msg []byte) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	for s := range m.subs[channel] {
		select {
		case s.ch <- append([]byte(nil), msg...):
		default:
			select {
			case s.lost <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// Subscribe delivers the channel's messages to fn until ctx ends.
func (m *MemoryStore) Subscribe(ctx context.Context, channel string, fn func(msg []byte)) error {
	s := &memSub{ch: make(chan []byte, memSubQueue), lost: make(chan struct{}, 1)}
	if err := m.lock(); err != nil {
		return err
	}
	if m.subs[channel] == nil {
		m.subs[channel] = make(map[*memSub]struct{})
	}
	m.subs[channel][s] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.subs[channel], s)
		if len(m.subs[channel]) == 0 {
			delete(m.subs, channel)
		}
		m.mu.Unlock()
	}()
	fn(nil)
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-s.ch:
			fn(msg)
		case <-s.lost:
			fn(nil)
		}
	}
}

// Health reports an in-process store: never shared, never degraded.
func (m *MemoryStore) Health() StoreHealth { return StoreHealth{Backend: "memory"} }

// Close empties the store; later calls fail with ErrStoreUnavailable.
func (m *MemoryStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.vals = nil
	return nil
}
