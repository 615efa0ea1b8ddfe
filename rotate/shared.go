package rotate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Keys a pool keeps in its store (relative: the store adds its prefix).
// Upstreams appear by id, a hash of their canonical entry, which is the same
// in every instance reading the same list and never shows credentials.
//
//	pool:NAME:cursor              round-robin counter (INCRBY blocks)
//	pool:NAME:fail:ID             consecutive failures of an upstream
//	pool:NAME:health:ID           its last quarantine or release (healthRecord)
//	pool:NAME:health              channel: "INSTANCE ID RECORD" on each change
//	pool:NAME:session:HASH        sticky session: "ID GEN"
//	pool:NAME:iv:HOST:ID          min-interval slot of an upstream for a host
//	pool:NAME:probe:ID            probe lease: the instance that probes it
//	pool:NAME:probed:ID           what its last probe learned (probeRecord)
//	reserve:HOST:ID               reservation of an exit for a host (any pool)
func (p *Pool) key(parts ...string) string {
	return "pool:" + p.name + ":" + strings.Join(parts, ":")
}

// upstreamID is the stable, credential-free identity of an entry.
func upstreamID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:10])
}

// newInstanceID returns a random id that tags this process's events and
// lease owners.
func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sessionID hashes a sticky session's key: user names and session ids stay
// out of the store's key space, and keys stay short.
func sessionID(k sessionKey) string {
	sum := sha256.Sum256([]byte(k.user + "\x00" + k.id + "\x00" + k.country))
	return hex.EncodeToString(sum[:16])
}

// byID returns the pool's upstream with id, or nil.
func (p *Pool) byID(id string) *Upstream {
	if m := p.ids.Load(); m != nil {
		return (*m)[id]
	}
	return nil
}

// storeCtx is the context for bookkeeping a request does in the store: the
// request's values without its cancellation, so that a client going away
// neither loses the write nor counts as the store failing. The store's own
// timeout bounds the call.
func storeCtx(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// nextPosition is the shared round-robin position for a first pick.
func (p *Pool) nextPosition(ctx context.Context) uint64 {
	return p.cursor.position(ctx, p.store, p.cursorKey)
}

// sharedFailure counts an upstream-fault failure in the store and adopts
// the count every instance sees together (they quarantine at the same
// total). When the store is unreachable the local count stands.
func (p *Pool) sharedFailure(ctx context.Context, u *Upstream) {
	if !p.shared {
		return
	}
	n, err := p.store.Incr(storeCtx(ctx), p.key("fail", u.id), 1, p.qMax)
	if err != nil {
		return
	}
	n = min(n, 1<<20)
	for {
		cur := u.consec.Load()
		if int64(cur) >= n || u.consec.CompareAndSwap(cur, int32(n)) {
			return
		}
	}
}

// sharedSuccess clears the shared failure count of an upstream that had
// failures (only then, so a success costs no store call).
func (p *Pool) sharedSuccess(ctx context.Context, u *Upstream, hadFailures bool) {
	if p.shared && hadFailures {
		_ = p.store.Delete(storeCtx(ctx), p.key("fail", u.id))
	}
}

// sessionLookup is what a shared store said about a sticky session.
type sessionLookup uint8

const (
	sessionUnknown sessionLookup = iota // unreachable: ask the local table
	sessionMissing                      // no binding (new, expired or lost): ask the local table, then share
	sessionFound                        // bound to an upstream of this pool
	sessionForeign                      // bound to an upstream this pool lacks: the session moves
)

// sharedSession looks a sticky session up in the store.
func (p *Pool) sharedSession(ctx context.Context, k sessionKey) (*Upstream, uint32, sessionLookup) {
	v, err := p.store.Get(storeCtx(ctx), p.key("session", sessionID(k)))
	switch {
	case err == nil:
	case isNotFound(err):
		return nil, 0, sessionMissing
	default:
		return nil, 0, sessionUnknown
	}
	id, genText, _ := strings.Cut(string(v), " ")
	g, _ := strconv.ParseUint(genText, 10, 32)
	if u := p.byID(id); u != nil {
		return u, uint32(g), sessionFound
	}
	return nil, uint32(g), sessionForeign
}

// shareSession records the session's upstream for every instance. The
// store keeps it an eighth longer than the local table, since busy
// sessions refresh it only that often (sessions.put).
func (p *Pool) shareSession(ctx context.Context, k sessionKey, u *Upstream, gen uint32) {
	ttl := p.sessions.ttl + p.sessions.ttl/8
	_ = p.store.Set(storeCtx(ctx), p.key("session", sessionID(k)), []byte(u.id+" "+strconv.FormatUint(uint64(gen), 10)), ttl)
}

// chooseShared takes a min-interval slot among cands (preference order)
// from the store: the first upstream not used for host within interval by
// any instance, waiting for the soonest to free up to the pool's maximum
// queue wait. ok is false when the store cannot answer; the caller then
// books locally.
func (p *Pool) chooseShared(ctx context.Context, cands []*Upstream, host string, interval time.Duration) (u *Upstream, err error, ok bool) {
	keys := make([]string, len(cands))
	for i, c := range cands {
		keys[i] = p.key("iv", host, c.id)
	}
	deadline := p.clock.Now().Add(p.maxWait)
	for {
		i, wait, serr := p.store.Acquire(storeCtx(ctx), keys, p.instance, interval)
		if serr != nil {
			return nil, nil, false
		}
		if i >= 0 {
			return cands[i], nil, true
		}
		now := p.clock.Now()
		if now.Add(wait).After(deadline) {
			return nil, ErrQueueWait, true
		}
		if err := p.clock.Sleep(ctx, max(wait, time.Millisecond)); err != nil {
			return nil, fmt.Errorf("%w: waiting for a min-interval slot: %w", ErrQueueWait, err), true
		}
	}
}

// maxStoreCandidates bounds the keys one Acquire call checks.
const maxStoreCandidates = 64

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// StateHealth reports the pool's store: which, shared or not, degraded or
// not, for /healthz and metrics.
func (p *Pool) StateHealth() StoreHealth { return p.store.Health() }

// Store returns the store the pool keeps its state in.
func (p *Pool) Store() Store { return p.store }
