package rotate

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// healthRecord is an upstream's last health change as kept in a shared
// store: "UNTIL OFFENCES AT CAUSE", times in unix nanoseconds. UNTIL is 0
// after a release. AT orders changes made by different instances: a record
// older than what an instance already knows is ignored.
type healthRecord struct {
	until    int64
	offences int
	at       int64
	cause    quarantineCause
}

func (r healthRecord) encode() []byte {
	return fmt.Appendf(nil, "%d %d %d %d", r.until, r.offences, r.at, r.cause)
}

func parseHealthRecord(s string) (healthRecord, bool) {
	f := strings.Fields(s)
	if len(f) != 4 {
		return healthRecord{}, false
	}
	until, e1 := strconv.ParseInt(f[0], 10, 64)
	off, e2 := strconv.Atoi(f[1])
	at, e3 := strconv.ParseInt(f[2], 10, 64)
	cause, e4 := strconv.ParseUint(f[3], 10, 8)
	if e1 != nil || e2 != nil || e3 != nil || e4 != nil || off < 0 || cause > uint64(causeExitIP) {
		return healthRecord{}, false
	}
	return healthRecord{until: until, offences: off, at: at, cause: quarantineCause(cause)}, true
}

// dirtyQueue bounds health changes waiting to be pushed; an overflow is
// caught by the next resynchronisation.
const dirtyQueue = 256

// markDirtyLocked notes a health change this instance made, for Sync to
// push to the shared store. Called with p.mu held.
func (p *Pool) markDirtyLocked(u *Upstream, now time.Time) {
	u.changedAt = now.UnixNano()
	u.pushed = false
	if !p.shared {
		return
	}
	select {
	case p.dirty <- u:
	default:
	}
}

// recordLocked is u's current health as a record.
func (p *Pool) recordLocked(u *Upstream) healthRecord {
	r := healthRecord{offences: u.offences, at: u.changedAt, cause: u.cause}
	if !u.healthy() {
		r.until = u.until.Load()
	}
	return r
}

// pushHealth writes u's current health to the store and tells the other
// instances. A quarantine record lives until its end plus MaxQuarantine (it
// carries the offence count that doubles the next period); a release record
// for MaxQuarantine.
func (p *Pool) pushHealth(ctx context.Context, u *Upstream) {
	p.mu.Lock()
	rec := p.recordLocked(u)
	pushed := u.pushed
	p.mu.Unlock()
	if pushed {
		return
	}
	ttl := p.qMax
	if rec.until != 0 {
		ttl += time.Duration(rec.until - p.clock.Now().UnixNano())
	}
	if ttl <= 0 {
		ttl = p.qMax
	}
	if p.store.Set(ctx, p.key("health", u.id), rec.encode(), ttl) != nil {
		return
	}
	msg := append([]byte(p.instance+" "+u.id+" "), rec.encode()...)
	if p.store.Publish(ctx, p.key("health"), msg) != nil {
		return
	}
	p.mu.Lock()
	if u.changedAt == rec.at {
		u.pushed = true
	}
	p.mu.Unlock()
}

// onHealthEvent applies another instance's published change; nil means the
// subscription was (re)established: resynchronise.
func (p *Pool) onHealthEvent(ctx context.Context, msg []byte) {
	if msg == nil {
		p.resyncHealth(ctx)
		return
	}
	inst, rest, _ := strings.Cut(string(msg), " ")
	id, recText, _ := strings.Cut(rest, " ")
	if inst == p.instance {
		return
	}
	rec, ok := parseHealthRecord(recText)
	u := p.byID(id)
	if !ok || u == nil {
		return
	}
	p.applyHealth(u, rec)
}

// applyHealth adopts rec if it is newer than what the pool knows of u.
func (p *Pool) applyHealth(u *Upstream, rec healthRecord) {
	p.mu.Lock()
	if rec.at <= u.changedAt || u.retired.Load() {
		p.mu.Unlock()
		return
	}
	now := p.clock.Now()
	u.changedAt, u.pushed = rec.at, true
	u.offences = rec.offences
	var logMsg string
	switch {
	case rec.until > now.UnixNano():
		u.cause = rec.cause
		u.until.Store(rec.until)
		if u.healthy() {
			u.state.Store(uint32(StateQuarantined))
			u.quarantines.Add(1)
			logMsg = "upstream quarantined"
		}
		if rec.until < p.nextRelease.Load() {
			p.nextRelease.Store(rec.until)
		}
	case !u.healthy():
		p.releaseLocked(u, time.Unix(0, rec.at))
		logMsg = "upstream released"
	default:
		u.releasedAt = time.Unix(0, rec.at)
	}
	if logMsg != "" {
		p.publishLocked()
	}
	healthy := p.sel.Len()
	p.mu.Unlock()
	if logMsg != "" {
		p.log.Info(logMsg, zap.String("upstream", u.label), zap.String("reason", "another instance"),
			zap.Time("until", time.Unix(0, rec.until)), zap.Int("healthy", healthy))
	}
}

// resyncHealth compares every upstream's health with the store's: it adopts
// newer records and pushes the changes the store lacks (made while it was
// unreachable, or lost with a restarted server).
func (p *Pool) resyncHealth(ctx context.Context) {
	ups := p.Upstreams()
	if len(ups) == 0 {
		return
	}
	keys := make([]string, len(ups))
	for i, u := range ups {
		keys[i] = p.key("health", u.id)
	}
	vals, err := p.store.GetMany(ctx, keys)
	if err != nil {
		return
	}
	now := p.clock.Now().UnixNano()
	for i, u := range ups {
		rec, ok := healthRecord{}, false
		if vals[i] != nil {
			rec, ok = parseHealthRecord(string(vals[i]))
		}
		if ok {
			p.applyHealth(u, rec)
		}
		p.mu.Lock()
		live := !u.healthy() && u.until.Load() > now
		// Push what the store lacks: a live quarantine it has no (or an
		// older) record of, or a release newer than its live quarantine.
		stale := !ok || rec.at < u.changedAt
		push := stale && (live || (ok && rec.until > now))
		if push {
			u.pushed = false
		}
		p.mu.Unlock()
		if push {
			p.pushHealth(ctx, u)
		}
	}
}
