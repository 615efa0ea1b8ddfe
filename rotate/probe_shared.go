package rotate

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// Probing with a shared store: each upstream is probed by one instance per
// interval, whichever holds its probe lease, and the others adopt what that
// probe learned.
//
// Before probing an upstream in a Run round, an instance takes the
// upstream's lease (pool:NAME:probe:ID, owned by the pool's instance id, for
// a little over one interval). The holder keeps it from round to round by
// taking it again before it expires. An instance whose Run ends (a graceful
// stop) releases the leases it holds, so the next instance whose round
// reaches those upstreams takes over at once; one that crashes loses them
// after the TTL, and the next round after that takes over. When the lease
// is held by another instance the round skips the upstream and reads its
// probeRecord instead (pool:NAME:probed:ID, written after every probe);
// every paced round also reads all of them once at its start, so an
// instance that just started shows the others' findings at once. Quarantines and releases travel separately, as every health change
// does (health_shared.go). A store that cannot answer means probing
// locally, as without one; ProbeAll never takes leases.

// probeOutcome is what one probe showed, as far as other instances care.
type probeOutcome uint8

const (
	probeWorked       probeOutcome = iota // it answered (and, with a judge, was clean)
	probeFailed                           // it failed by its own fault: charged
	probeInconclusive                     // it failed by no fault of its own (this host, the target): not charged
	probeLeaked                           // it answered, judged below RequireAnonymity
	probeExitChanged                      // it answered from another exit than the pinned one
)

// answered reports whether the probe got an answer through the upstream,
// which the success rate counts as a success.
func (o probeOutcome) answered() bool {
	return o == probeWorked || o == probeLeaked || o == probeExitChanged
}

// probeRecord is an upstream's last probe as kept in a shared store:
//
//	AT OUTCOME LATENCY ANONYMITY EXIT PINNED ERROR
//
// AT is the probe's time and LATENCY the prober's moving average, both in
// nanoseconds; EXIT and PINNED are addresses or "-" (no judge finding yet);
// ERROR, the rest of the line, is the text of the probe's error (empty when
// it worked), printable ASCII only.
type probeRecord struct {
	at        int64
	outcome   probeOutcome
	latency   int64
	anonymity Anonymity
	exit      netip.Addr
	pinned    netip.Addr
	msg       string
}

// Bounds on a probe record: its error text, and the whole record (a longer
// value is not one of ours).
const (
	maxProbeErrorText = 300
	maxProbeRecord    = 512
)

func (r probeRecord) encode() []byte {
	return fmt.Appendf(nil, "%d %d %d %d %s %s %s", r.at, r.outcome, r.latency, r.anonymity,
		addrField(r.exit), addrField(r.pinned), r.msg)
}

func addrField(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

// parseProbeRecord reads a record another instance wrote (or anything else
// found at its key): it accepts only what encode produces.
func parseProbeRecord(s string) (probeRecord, bool) {
	if len(s) > maxProbeRecord {
		return probeRecord{}, false
	}
	f := strings.SplitN(s, " ", 7)
	if len(f) != 7 {
		return probeRecord{}, false
	}
	at, e1 := strconv.ParseInt(f[0], 10, 64)
	outcome, e2 := strconv.ParseUint(f[1], 10, 8)
	lat, e3 := strconv.ParseInt(f[2], 10, 64)
	anon, e4 := strconv.ParseUint(f[3], 10, 8)
	exit, ok1 := parseAddrField(f[4])
	pinned, ok2 := parseAddrField(f[5])
	if e1 != nil || e2 != nil || e3 != nil || e4 != nil || !ok1 || !ok2 || at <= 0 || lat < 0 ||
		outcome > uint64(probeExitChanged) || anon >= uint64(len(anonymityNames)) ||
		f[6] != errorText(f[6]) {
		return probeRecord{}, false
	}
	return probeRecord{at: at, outcome: probeOutcome(outcome), latency: lat, anonymity: Anonymity(anon),
		exit: exit, pinned: pinned, msg: f[6]}, true
}

// parseAddrField reads an address field: "-" or an address without a zone,
// in canonical form.
func parseAddrField(s string) (netip.Addr, bool) {
	if s == "-" {
		return netip.Addr{}, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.String() != s {
		return netip.Addr{}, false
	}
	return a, true
}

// errorText is an error's text as a record keeps it: printable ASCII (others
// become '?'), at most maxProbeErrorText bytes.
func errorText(s string) string {
	b := make([]byte, 0, min(len(s), maxProbeErrorText))
	for i := 0; i < len(s) && len(b) < maxProbeErrorText; i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f {
			c = '?'
		}
		b = append(b, c)
	}
	return string(b)
}

// err is the record's error as an upstream's last error, nil when the probe
// did not fail by the upstream's fault.
func (r probeRecord) err() error {
	var kind error
	switch r.outcome {
	case probeFailed:
		kind = dial.ErrUpstream
	case probeLeaked:
		kind = ErrLeak
	case probeExitChanged:
		kind = ErrExitIPChanged
	default:
		return nil
	}
	msg := r.msg
	if msg == "" {
		msg = kind.Error()
	}
	return &sharedProbeError{msg: msg, kind: kind}
}

// sharedProbeError is a probe failure another instance saw: its text, and
// the sentinel it was (dial.ErrUpstream, ErrLeak or ErrExitIPChanged).
type sharedProbeError struct {
	msg  string
	kind error
}

func (e *sharedProbeError) Error() string { return e.msg }
func (e *sharedProbeError) Unwrap() error { return e.kind }

// leaseTTL is how long a probe lease lasts in a round over n upstreams: the
// interval, plus one slot (the holder's next turn may come that much later)
// and one probe timeout (a round stretched by slow probes), so the holder
// keeps it while it runs and loses it soon after it stops.
func (pr *Prober) leaseTTL(n int) time.Duration {
	iv := pr.interval()
	return iv + iv/time.Duration(max(n, 1)) + pr.timeout()
}

// recordTTL is how long a probe record outlives its probe: three intervals,
// so a record survives a missed round, and nothing outlives its instances
// for long.
func (pr *Prober) recordTTL() time.Duration { return 3*pr.interval() + pr.timeout() }

// holdsLease reports whether this instance should probe u in this round: it
// holds u's probe lease (free, expired, or its own from its previous round),
// or the store cannot answer (probe locally: a store outage never stops
// probing). False means another instance holds it.
func (pr *Prober) holdsLease(ctx context.Context, u *Upstream, ttl time.Duration) bool {
	p := pr.pool
	// Renew is Acquire of one key (SET NX PX when it is free) that also
	// extends this owner's own hold: with Acquire alone, the holder would
	// find its own lease of the previous round and skip its upstreams.
	ok, err := p.store.Renew(ctx, p.key("probe", u.id), p.instance, ttl)
	// A call that failed may still have taken the lease (the reply was
	// lost): only "another instance holds it" means this one does not.
	pr.noteLease(u.id, ok || err != nil)
	if err != nil {
		return ctx.Err() == nil
	}
	return ok
}

// noteLease records whether this instance may hold the probe lease of the
// upstream id, for releaseLeases.
func (pr *Prober) noteLease(id string, held bool) {
	pr.leaseMu.Lock()
	defer pr.leaseMu.Unlock()
	if !held {
		delete(pr.leases, id)
		return
	}
	if pr.leases == nil {
		pr.leases = make(map[string]struct{})
	}
	pr.leases[id] = struct{}{}
}

// forgetLeases drops the upstreams no longer in ups from the leases to
// release, so the set stays bounded as lists change; their leases expire.
func (pr *Prober) forgetLeases(ups []*Upstream) {
	pr.leaseMu.Lock()
	defer pr.leaseMu.Unlock()
	if len(pr.leases) == 0 {
		return
	}
	in := make(map[string]struct{}, len(ups))
	for _, u := range ups {
		in[u.id] = struct{}{}
	}
	for id := range pr.leases {
		if _, ok := in[id]; !ok {
			delete(pr.leases, id)
		}
	}
}

// releaseLeases frees the probe leases this instance may hold, when Run
// ends, so that the other instances need not wait out their TTL. Release
// is compare-and-delete: a lease another instance has taken meanwhile is
// left alone. It runs Concurrency releases at a time on ctx's values
// without its cancellation (it has ended), each bounded by the store's own
// timeout, and stops at the first failure (the store is unreachable: the
// TTL frees the rest), so a stop waits about one store timeout at most when
// the store is down. One probe timeout bounds the whole.
func (pr *Prober) releaseLeases(ctx context.Context) {
	pr.leaseMu.Lock()
	ids := make([]string, 0, len(pr.leases))
	for id := range pr.leases {
		ids = append(ids, id)
	}
	pr.leases = nil
	pr.leaseMu.Unlock()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(storeCtx(ctx), pr.timeout())
	defer cancel()
	p := pr.pool
	var (
		next     atomic.Int64
		released atomic.Int64
		failed   atomic.Pointer[error]
		wg       sync.WaitGroup
	)
	releaser := func() {
		for failed.Load() == nil {
			i := int(next.Add(1)) - 1
			if i >= len(ids) {
				return
			}
			if err := p.store.Release(ctx, p.key("probe", ids[i]), p.instance); err != nil {
				failed.CompareAndSwap(nil, &err)
				return
			}
			released.Add(1)
		}
	}
	for range min(pr.concurrency(), len(ids)) {
		wg.Go(releaser)
	}
	wg.Wait()
	if errp := failed.Load(); errp != nil {
		pr.log.Debug("probe leases left to expire", zap.Int("released", int(released.Load())),
			zap.Int("held", len(ids)), zap.Error(*errp))
		return
	}
	pr.log.Debug("probe leases released", zap.Int("released", len(ids)))
}

// shareProbe writes what a probe of u learned for the instances that skip
// it; a store that cannot be reached loses it (they probe themselves then).
func (pr *Prober) shareProbe(ctx context.Context, u *Upstream, outcome probeOutcome, err error) {
	p := pr.pool
	if !p.shared {
		return
	}
	rec := probeRecord{at: u.lastProbe.Load(), outcome: outcome, latency: u.probeLatency.Load()}
	if x := u.exit.Load(); x != nil {
		rec.exit, rec.anonymity, rec.pinned = x.ip, x.anonymity, x.pinned
	}
	if err != nil && outcome != probeInconclusive {
		rec.msg = errorText(err.Error())
	}
	_ = p.store.Set(ctx, p.key("probed", u.id), rec.encode(), pr.recordTTL())
}

// adoptShared reads the probe records of ups in one call and adopts those
// newer than what this instance knows.
func (pr *Prober) adoptShared(ctx context.Context, ups []*Upstream) {
	p := pr.pool
	if len(ups) == 0 {
		return
	}
	keys := make([]string, len(ups))
	for i, u := range ups {
		keys[i] = p.key("probed", u.id)
	}
	vals, err := p.store.GetMany(ctx, keys)
	if err != nil || len(vals) != len(ups) {
		return
	}
	for i, v := range vals {
		if v == nil {
			continue
		}
		if rec, ok := parseProbeRecord(string(v)); ok {
			adoptProbe(ups[i], rec)
		}
	}
}

// adoptOne reads u's probe record and adopts it if it is newer.
func (pr *Prober) adoptOne(ctx context.Context, u *Upstream) {
	v, err := pr.pool.store.Get(ctx, pr.pool.key("probed", u.id))
	if err != nil {
		return
	}
	if rec, ok := parseProbeRecord(string(v)); ok {
		adoptProbe(u, rec)
	}
}

// adoptProbe takes another instance's probe of u as if this instance had
// made it, for the selection policies and the status page: its time, the
// prober's latency average, its outcome in the success rate, the judge's
// findings (the pinned exit included, so that whoever probes next compares
// with it) and its error. The probe counters stay this instance's own, so
// that metrics summed over instances count each probe once. A record no
// newer than u's last probe is ignored, so each is adopted once.
func adoptProbe(u *Upstream, rec probeRecord) {
	for {
		last := u.lastProbe.Load()
		if rec.at <= last {
			return
		}
		if u.lastProbe.CompareAndSwap(last, rec.at) {
			break
		}
	}
	if rec.latency > 0 {
		u.probeLatency.Store(rec.latency)
	}
	switch {
	case rec.outcome == probeFailed:
		u.recordRate(false)
	case rec.outcome.answered():
		u.recordRate(true)
	}
	if rec.exit.IsValid() {
		u.exit.Store(&exitRecord{ip: rec.exit, anonymity: rec.anonymity, pinned: rec.pinned})
	}
	if err := rec.err(); err != nil {
		at := time.Unix(0, rec.at)
		if cur := u.lastErr.Load(); cur == nil || cur.at.Before(at) {
			u.lastErr.Store(&errorRecord{err: err, at: at})
		}
	}
}
