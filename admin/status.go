package admin

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/rotate"
)

// Egress kinds in the status API.
const (
	EgressDirect = "direct"
	EgressPools  = "pools"
)

// Upstreams is the body of /api/upstreams.
type Upstreams struct {
	Egress string     `json:"egress"` // EgressDirect or EgressPools
	Pools  []PoolInfo `json:"pools"`  // empty for direct egress
}

// PoolSummary is one pool in /api/stats.
type PoolSummary struct {
	Name    string `json:"name"`
	Policy  string `json:"policy"`
	Size    int    `json:"size"`
	Healthy int    `json:"healthy"`
}

// PoolInfo is one pool in /api/upstreams.
type PoolInfo struct {
	PoolSummary
	Upstreams []UpstreamInfo `json:"upstreams"`
}

// UpstreamInfo is one upstream in /api/upstreams. Label is redacted (no
// credentials) and unique within its pool. Times are RFC 3339, null when
// not applicable.
//
// With shared state (--state redis://) successes, failures and
// target_failures count this instance's own dials, so they add up over
// instances; the rest is the upstream as this instance knows it, partly
// from the others (rotate.Stats): state, quarantined_until and quarantines
// follow quarantines any instance decided, and success_rate, last_error and
// exit_ip take in the probes of whichever instance probed it (one per
// interval). Those are compared across instances, not summed.
type UpstreamInfo struct {
	Label               string     `json:"label"`
	Scheme              string     `json:"scheme"`
	State               string     `json:"state"` // "healthy" or "quarantined"
	Successes           uint64     `json:"successes"`
	Failures            uint64     `json:"failures"`        // its own fault
	TargetFailures      uint64     `json:"target_failures"` // the target's
	ConsecutiveFailures int        `json:"consecutive_failures"`
	Quarantines         uint64     `json:"quarantines"`
	QuarantinedUntil    *time.Time `json:"quarantined_until"`
	LatencyMS           float64    `json:"latency_ms"`   // moving average of this instance's dials, 0 before the first
	SuccessRate         float64    `json:"success_rate"` // moving average of dials and probes that worked
	LastError           string     `json:"last_error"`   // last failed dial here or probe anywhere
	LastErrorAt         *time.Time `json:"last_error_at"`
	ExitIP              string     `json:"exit_ip,omitempty"` // as the judge saw it on the last probe
}

// Stats is the body of /api/stats.
type Stats struct {
	Now           time.Time             `json:"now"`
	StartedAt     time.Time             `json:"started_at"`
	UptimeSeconds float64               `json:"uptime_seconds"`
	Proxy         string                `json:"proxy,omitempty"`
	Health        Health                `json:"health"`
	Egress        string                `json:"egress"`
	Active        int64                 `json:"active"`
	Tunnels       uint64                `json:"tunnels"`
	BytesUp       uint64                `json:"bytes_up"`
	BytesDown     uint64                `json:"bytes_down"`
	AuthFailures  uint64                `json:"auth_failures"` // proxy and admin logins refused
	Reloads       uint64                `json:"reloads"`
	ReloadsFailed uint64                `json:"reloads_failed"`
	ByProtocol    map[string]ProtoStats `json:"by_protocol"` // protocols seen only
	ByResult      map[string]uint64     `json:"by_result"`
	Pools         []PoolSummary         `json:"pools"`
	SeriesStep    float64               `json:"series_step_seconds"`
	Series        []Sample              `json:"series"`
	RecentErrors  []RecentError         `json:"recent_errors"` // newest first
}

// ProtoStats is one front-end protocol's share of Stats.
type ProtoStats struct {
	Active    int64  `json:"active"`
	Tunnels   uint64 `json:"tunnels"`
	BytesUp   uint64 `json:"bytes_up"`
	BytesDown uint64 `json:"bytes_down"`
}

// Health is the verdict of /healthz.
type Health struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

// upstreams builds the /api/upstreams body.
func (m *Metrics) upstreams() Upstreams {
	if m.cfg.Upstreams == nil {
		return Upstreams{Egress: EgressDirect, Pools: []PoolInfo{}}
	}
	st := m.cfg.Upstreams.Status()
	out := Upstreams{Egress: EgressPools, Pools: make([]PoolInfo, len(st))}
	for i, ps := range st {
		pi := PoolInfo{PoolSummary: poolSummary(ps)}
		labels := uniqueLabels(ps.Upstreams)
		pi.Upstreams = make([]UpstreamInfo, len(ps.Upstreams))
		for j := range ps.Upstreams {
			pi.Upstreams[j] = upstreamInfo(labels[j], &ps.Upstreams[j])
		}
		out.Pools[i] = pi
	}
	return out
}

func poolSummary(ps rotate.PoolStatus) PoolSummary {
	policy := ps.Policy.String()
	if policy == "" {
		policy = "round-robin"
	}
	return PoolSummary{Name: ps.Name, Policy: policy, Size: len(ps.Upstreams), Healthy: ps.Healthy}
}

func upstreamInfo(label string, u *rotate.UpstreamStatus) UpstreamInfo {
	s := &u.Stats
	ui := UpstreamInfo{
		Label:               label,
		Scheme:              u.Scheme.String(),
		State:               s.State.String(),
		Successes:           s.Successes,
		Failures:            s.Failures,
		TargetFailures:      s.TargetFailures,
		ConsecutiveFailures: s.ConsecutiveFailures,
		Quarantines:         s.Quarantines,
		LatencyMS:           float64(s.Latency) / float64(time.Millisecond),
		SuccessRate:         s.SuccessRate,
	}
	if !s.QuarantinedUntil.IsZero() {
		t := s.QuarantinedUntil.UTC()
		ui.QuarantinedUntil = &t
	}
	if s.LastError != nil {
		ui.LastError = s.LastError.Error()
		t := s.LastErrorAt.UTC()
		ui.LastErrorAt = &t
	}
	if s.ExitIP.IsValid() {
		ui.ExitIP = s.ExitIP.String()
	}
	return ui
}

// health decides /healthz: the listener must serve (serving nil: assumed)
// and every pool must have an upstream in service; direct egress is always
// in service.
func (m *Metrics) health(serving func() error) Health {
	var st []rotate.PoolStatus
	if m.cfg.Upstreams != nil {
		st = m.cfg.Upstreams.Status()
	}
	return m.healthOf(serving, st)
}

// healthOf is health for a status already read.
func (m *Metrics) healthOf(serving func() error, st []rotate.PoolStatus) Health {
	if serving != nil {
		if err := serving(); err != nil {
			return Health{Reason: "proxy listener not serving: " + err.Error()}
		}
	}
	if m.cfg.Upstreams == nil {
		return Health{OK: true, Reason: "ok: egressing directly"}
	}
	if len(st) == 0 {
		return Health{Reason: "no pools"}
	}
	var bad []string
	healthy, size := 0, 0
	for _, ps := range st {
		healthy += ps.Healthy
		size += len(ps.Upstreams)
		if ps.Healthy > 0 {
			continue
		}
		if len(ps.Upstreams) == 0 {
			bad = append(bad, fmt.Sprintf("pool %s has no upstreams (list not loaded?)", ps.Name))
			continue
		}
		bad = append(bad, fmt.Sprintf("pool %s: all %d upstreams quarantined", ps.Name, len(ps.Upstreams)))
	}
	if len(bad) > 0 {
		return Health{Reason: "no healthy upstream: " + strings.Join(bad, "; ")}
	}
	return Health{OK: true, Reason: fmt.Sprintf("ok: %d of %d upstreams healthy in %d pools", healthy, size, len(st)) + m.stateNote()}
}

// StateSource is an UpstreamSource that shares state with other instances
// (rotate.Router with --state redis://...).
type StateSource interface {
	StateHealth() rotate.StoreHealth
}

// stateNote describes degraded shared state for /healthz. Degraded state
// does not fail the check: hopper keeps serving from local state.
func (m *Metrics) stateNote() string {
	ss, ok := m.cfg.Upstreams.(StateSource)
	if !ok {
		return ""
	}
	h := ss.StateHealth()
	if !h.Degraded {
		return ""
	}
	note := fmt.Sprintf("; shared state %s degraded since %s, serving from local state", h.Backend, h.Since.UTC().Format(time.RFC3339))
	if h.Err != nil {
		note += ": " + h.Err.Error()
	}
	return note
}

// stats builds the /api/stats body.
func (m *Metrics) stats(proxy string, serving func() error) Stats {
	now := m.now()
	s := Stats{
		Now:           now.UTC(),
		StartedAt:     m.started.UTC(),
		UptimeSeconds: now.Sub(m.started).Seconds(),
		Proxy:         proxy,
		Egress:        EgressDirect,
		AuthFailures:  m.nAdminAuth.Load(),
		Reloads:       m.nReloads[0].Load() + m.nReloads[1].Load(),
		ReloadsFailed: m.nReloads[1].Load(),
		ByProtocol:    make(map[string]ProtoStats),
		ByResult:      make(map[string]uint64),
		Pools:         []PoolSummary{},
		SeriesStep:    SeriesStep.Seconds(),
		Series:        m.act.series(now),
		RecentErrors:  m.act.recentErrors(),
	}
	for p := range m.protos {
		pm := &m.protos[p]
		ps := ProtoStats{Active: pm.nActive.Load(), Tunnels: pm.nTotal.Load(), BytesUp: pm.nUp.Load(), BytesDown: pm.nDown.Load()}
		s.Active += ps.Active
		s.Tunnels += ps.Tunnels
		s.BytesUp += ps.BytesUp
		s.BytesDown += ps.BytesDown
		s.AuthFailures += pm.nAuth.Load()
		if ps != (ProtoStats{}) {
			s.ByProtocol[dial.Protocol(p).String()] = ps
		}
	}
	m.resMu.RLock()
	for k, c := range m.results {
		s.ByResult[k.result] += c.n.Load()
	}
	m.resMu.RUnlock()
	var st []rotate.PoolStatus
	if m.cfg.Upstreams != nil {
		s.Egress = EgressPools
		st = m.cfg.Upstreams.Status()
		for _, ps := range st {
			s.Pools = append(s.Pools, poolSummary(ps))
		}
		sort.Slice(s.Pools, func(i, j int) bool { return s.Pools[i].Name < s.Pools[j].Name })
	}
	s.Health = m.healthOf(serving, st)
	return s
}
