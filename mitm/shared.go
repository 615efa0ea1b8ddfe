package mitm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"time"

	"go.uber.org/zap"
)

// SharedStore is a key-value store with expiring keys that several
// interceptors share (hopper's --state store on Redis), so that instances
// behind one load balancer show every site one identity per upstream:
// the same profile and the same cookies, whichever instance a request
// reaches. Calls must be short (the request waits on them) and may fail:
// an interceptor that cannot reach the store carries on with the
// identities it has.
type SharedStore interface {
	// Get returns the value at key, or an error wrapping ErrSharedNotFound
	// when there is none.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value at key until ttl from now.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// ErrSharedNotFound is what a SharedStore's Get wraps for a missing key.
var ErrSharedNotFound = errors.New("no shared value")

// DefaultSharedTTL is how long an identity stays in Config.Shared after it
// was last written, unless Config.SharedTTL says otherwise.
const DefaultSharedTTL = 24 * time.Hour

const (
	// identityKeyPrefix starts the key of every identity in the shared
	// store: identity/<upstream>/<site>.
	identityKeyPrefix = "identity/"
	// blobVersion is the format of identityBlob this build writes.
	blobVersion = 1
	// maxBlobBytes bounds an identity record, well below a shared store's
	// 1 MiB (a jar's records stay under maxJarBytes).
	maxBlobBytes = 768 << 10
	// maxSyncRounds bounds the writes one sync makes when the identity keeps
	// changing while it is written.
	maxSyncRounds = 3
)

// Errors decoding an identity record.
var (
	errBadBlob = errors.New("bad shared identity record")
	// errBlobVersion: a record in a format this build does not know,
	// written by a newer hopper; it is left alone.
	errBlobVersion = fmt.Errorf("%w: unknown format", errBadBlob)
)

// identityBlob is an identity as the shared store keeps it (JSON).
type identityBlob struct {
	V int `json:"v"`
	// Gen names the identity; Rot counts the rotations of its pair before
	// it. Of two identities of a pair the one with the higher Rot wins,
	// then the one with the greater Gen, so instances agree on one.
	Gen string `json:"gen"`
	Rot uint64 `json:"rot"`
	// Profile is a built-in profile's name, or "mirror" (each client's
	// own fingerprint: only the cookies are shared).
	Profile string         `json:"profile"`
	Cookies []cookieRecord `json:"cookies"`
}

// sharedKey is the key of pair k's identity.
func sharedKey(k pairKey) string { return identityKeyPrefix + k.upstream + "/" + k.site }

// encodeBlob is b as stored, or an error when it would pass maxBlobBytes.
func encodeBlob(b *identityBlob) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadBlob, err)
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(out) > maxBlobBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", errBadBlob, len(out), maxBlobBytes)
	}
	return out, nil
}

// decodeBlob parses and checks a record read from the shared store: input
// from the network, so every field is bounded and every cookie must be one
// the jar itself would have kept. It wraps errBadBlob (errBlobVersion for a
// newer format).
func decodeBlob(data []byte) (*identityBlob, error) {
	if len(data) > maxBlobBytes {
		return nil, fmt.Errorf("%w: %d bytes", errBadBlob, len(data))
	}
	var b identityBlob
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadBlob, err)
	}
	switch {
	case b.V > blobVersion:
		return nil, fmt.Errorf("%w %d", errBlobVersion, b.V)
	case b.V != blobVersion:
		return nil, fmt.Errorf("%w: version %d", errBadBlob, b.V)
	case !validToken(b.Gen):
		return nil, fmt.Errorf("%w: generation %q", errBadBlob, b.Gen)
	case !validToken(b.Profile):
		return nil, fmt.Errorf("%w: profile %q", errBadBlob, b.Profile)
	}
	for i := range b.Cookies {
		if !b.Cookies[i].valid() {
			return nil, fmt.Errorf("%w: cookie %d", errBadBlob, i)
		}
	}
	return &b, nil
}

// validToken reports 1 to 64 letters, digits and dashes.
func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// sync reconciles pair k with its record in the shared store: it reads the
// record, takes what is newer there (another instance's identity for the
// pair, or cookies), and writes the pair back when this instance knows
// something newer, or when the record is half way to expiring. With host
// set it creates a pair this instance does not hold, from the record or
// afresh; without, a pair that is gone is left alone. Concurrent calls for
// one pair share one round trip. A store that cannot be reached leaves
// local state as it is (the store logs its outage); what is newer here is
// written at a later sync.
func (s *identityStore) sync(ctx context.Context, k pairKey, host string) {
	key := sharedKey(k)
	_, _, _ = s.flights.Do(key, func() (any, error) {
		for range maxSyncRounds {
			if !s.syncOnce(ctx, k, key, host) {
				break
			}
		}
		return nil, nil
	})
}

// syncOnce is one read and at most one write; it reports whether the pair
// changed again while it was written.
func (s *identityStore) syncOnce(ctx context.Context, k pairKey, key, host string) (again bool) {
	raw, err := s.shared.Get(ctx, key)
	switch {
	case errors.Is(err, ErrSharedNotFound):
		raw = nil
	case err != nil:
		s.log.Debug("shared identity not read; using local state", zap.String("key", key), zap.Error(err))
		return false
	}
	sum := maphash.Bytes(s.seed, raw)

	s.mu.Lock()
	p, ok := s.pairs.get(k)
	if !ok && host == "" {
		s.mu.Unlock()
		return false
	}
	var b *identityBlob
	if raw != nil && (!ok || sum != p.seen) {
		b, err = decodeBlob(raw)
		if errors.Is(err, errBlobVersion) {
			s.mu.Unlock()
			return false
		}
		if err != nil {
			s.log.Debug("unreadable shared identity; replacing it", zap.String("key", key), zap.Error(err))
		}
	}
	now := s.now()
	switch {
	case !ok:
		p = &pair{host: host, written: now}
		if b != nil {
			p.id, p.seen = s.identityFrom(k, host, b), sum
		} else {
			p.id, p.dirty = s.newIdentity(k.upstream, k.site, host, nil), true
		}
		s.pairs.add(k, p)
	case raw == nil || (sum != p.seen && b == nil):
		p.dirty = true // missing, or unreadable
	case b != nil:
		s.reconcileLocked(k, p, b)
		p.seen = sum
	}
	if now.Sub(p.written) >= s.ttl/2 {
		p.dirty = true // keep the record from expiring while in use
	}
	if !p.dirty {
		s.mu.Unlock()
		return false
	}
	id := p.id
	p.dirty = false
	s.mu.Unlock()

	data, err := encodeBlob(&identityBlob{V: blobVersion, Gen: id.gen, Rot: id.rot, Profile: id.Profile.Name, Cookies: id.jar.export()})
	if err == nil {
		err = s.shared.Set(ctx, key, data, s.ttl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.pairs.get(k); !ok || cur != p {
		return false
	}
	if err != nil {
		s.log.Debug("shared identity not written; will try again", zap.String("key", key), zap.Error(err))
		p.dirty = true
		return false
	}
	p.seen, p.written = maphash.Bytes(s.seed, data), now
	return p.dirty
}

// reconcileLocked brings pair p in line with b, its record in the store:
// the same identity merges cookies both ways; a winning identity of
// another instance (a later rotation, or a tie broken by Gen) replaces p's,
// which is retired so its connections are not reused; a losing one is
// overwritten. Two identities of the same generation (made at once by two
// instances: on first use, by simultaneous rotations, or while the store
// was away) end as the winner's profile with the cookies of both.
func (s *identityStore) reconcileLocked(k pairKey, p *pair, b *identityBlob) {
	id := p.id
	switch {
	case b.Rot == id.rot && b.Gen == id.gen:
		if id.jar.merge(b.Cookies) {
			p.dirty = true
		}
	case b.Rot > id.rot || (b.Rot == id.rot && b.Gen > id.gen):
		next := s.identityFrom(k, p.host, b)
		if b.Rot == id.rot && next.jar.merge(id.jar.export()) {
			p.dirty = true
		}
		id.retired.Store(true)
		p.id, p.forbidden = next, 0
	default:
		if b.Rot == id.rot {
			id.jar.merge(b.Cookies) // the tie is ours: keep the loser's cookies too
		}
		p.dirty = true
	}
}

// identityFrom makes the identity record b describes: its profile (this
// instance's choice when b names one it does not have, such as mirror
// without mirroring), generation and cookies.
func (s *identityStore) identityFrom(k pairKey, host string, b *identityBlob) *Identity {
	prof := s.chooser.named(b.Profile)
	if prof == nil {
		prof = s.chooser.choose(host, nil)
	}
	id := &Identity{Profile: prof, Upstream: k.upstream, Site: k.site, jar: newJar(s.cfg.MaxCookiesPerJar),
		serial: s.serials.Add(1), gen: b.Gen, rot: b.Rot}
	id.jar.merge(b.Cookies)
	return id
}
