package bench

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"go.uber.org/zap"
)

// ErrMeasurement marks a run in which direct, hopper or chained hopper
// failed a scenario (lost bytes, refused tunnels, died). Failures of peers
// are only noted in the report.
var ErrMeasurement = errors.New("bench: measurement failed")

// Run measures every scenario against direct, hopper, chained hopper and
// the installed peers, prints progress and then the markdown table to out,
// and returns the report. The report is returned even with an error
// wrapping ErrMeasurement, so what was measured can still be written out.
// ctx bounds the whole run; cancelling it stops the measurements at the
// next scenario step and stops every process the run started.
func Run(ctx context.Context, opts Options, out io.Writer) (*Report, error) {
	if !measurable {
		return nil, fmt.Errorf("%w: the harness reads CPU and memory from /proc: it runs on Linux only", ErrOptions)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.ModuleDir == "" {
		root, err := moduleRoot()
		if err != nil && opts.HopperBin == "" {
			return nil, err
		}
		opts.ModuleDir = root
	}
	tmp, err := os.MkdirTemp("", "hopper-bench-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	bin := opts.HopperBin
	if bin == "" {
		fmt.Fprintln(out, "building hopper from", opts.ModuleDir)
		bin = filepath.Join(tmp, "hopper")
		if err := buildHopper(ctx, opts.ModuleDir, bin, "-trimpath"); err != nil {
			return nil, err
		}
	}
	o, err := startOrigins()
	if err != nil {
		return nil, err
	}
	defer o.close()

	h := &harness{opts: opts, o: o, out: out, log: opts.Logger, res: make(map[resKey][]float64), roots: o.roots.Clone()}
	hop := &hopperLauncher{bin: bin, extra: opts.HopperArgs, profiles: opts.CPUProfileDir}
	h.subjects = append(h.subjects, directSubject(), hopperSubject(hop))
	if !opts.NoChained {
		h.subjects = append(h.subjects, chainedSubject(hop, tmp))
	}
	if !opts.NoMITM && opts.runs("tls") {
		h.subjects = append(h.subjects, mitmSubject(hop, tmp, h.roots))
	}
	h.subjects = append(h.subjects, bareSubject(opts.BareRelay))
	if !opts.NoChained {
		h.subjects = append(h.subjects, bareChainedSubject(opts.BareRelay))
	}
	for _, p := range peerList() {
		s := peerSubject(p, opts.LookPath, tmp)
		if !opts.Peers {
			s.start, s.absent = nil, "not run (peers off)"
		}
		h.subjects = append(h.subjects, s)
	}
	err = h.run(ctx)
	rep := h.report()
	fmt.Fprintln(out)
	fmt.Fprint(out, rep.Markdown())
	return rep, err
}

// harness is one run's state.
type harness struct {
	opts     Options
	o        *origins
	out      io.Writer
	log      *zap.Logger
	subjects []*subject
	live     []*live
	// roots are what HTTPS clients trust: the origin's certificate and the
	// MITM column's CA.
	roots *x509.CertPool

	res   map[resKey][]float64
	notes []*note
	errs  []error
}

// note is a failure seen in one or more repetitions; the first error is
// kept.
type note struct {
	what  string
	err   error
	count int
}

func (n *note) String() string {
	s := n.what + ": " + n.err.Error()
	if n.count > 1 {
		s += fmt.Sprintf(" (%d times; first error shown)", n.count)
	}
	return s
}

// resKey names one cell of the table; direct's cells use FrontDirect.
type resKey struct {
	m     metric
	front Front
	col   string
}

// live is a started subject measured across repetitions.
type live struct {
	s    *subject
	inst *instance
	dead bool
}

func (h *harness) run(ctx context.Context) error {
	defer func() {
		stops := make([]func(), 0, len(h.live))
		for _, l := range h.live {
			stops = append(stops, l.inst.stop)
		}
		stopAll(stops...)
	}()
	for _, s := range h.subjects {
		switch {
		case s.name == colDirect:
			h.live = append(h.live, &live{s: s, inst: startDirect()})
		case s.start == nil:
			fmt.Fprintf(h.out, "%s: %s\n", s.name, s.absent)
		default:
			inst, err := s.start(ctx)
			if err != nil {
				s.absent = "failed to start"
				h.note(s, FrontDirect, "start", err)
				continue
			}
			h.live = append(h.live, &live{s: s, inst: inst})
		}
	}
	for rep := 1; rep <= h.opts.Reps; rep++ {
		fmt.Fprintf(h.out, "repetition %d of %d, %s per scenario\n", rep, h.opts.Reps, h.opts.Duration)
		for _, step := range h.steps() {
			for _, l := range h.live {
				for _, r := range l.routes() {
					if err := ctx.Err(); err != nil {
						return err
					}
					if l.dead || !l.s.measures(step.name) {
						continue
					}
					step.run(ctx, l, r)
					if !l.inst.alive() {
						l.dead = true
						h.note(l.s, r.front, "process", fmt.Errorf("%w: exited during the run", ErrStart))
					}
				}
			}
		}
	}
	for rep := 1; rep <= h.opts.Reps && h.opts.runs("idle"); rep++ {
		fmt.Fprintf(h.out, "idle memory, repetition %d of %d, %d tunnels\n", rep, h.opts.Reps, h.opts.IdleTunnels)
		for _, l := range h.live {
			if l.s.start == nil || l.dead || !l.s.measures("idle") {
				continue
			}
			for _, r := range l.routes() {
				if err := ctx.Err(); err != nil {
					return err
				}
				res, err := idleMemory(ctx, h.o, l.s, r.front, h.opts.IdleTunnels)
				if err != nil {
					h.note(l.s, r.front, "idle tunnels", err)
				}
				if res.tunnels == 0 {
					continue
				}
				h.record(l, r.front, mIdleKiB, res.kib)
				h.record(l, r.front, mIdleFDs, res.fds)
				h.record(l, r.front, mIdleOpen, float64(res.tunnels))
				h.progress(l, r, "per idle tunnel", "%.1f KiB, %.1f descriptors (%d open)", res.kib, res.fds, res.tunnels)
			}
		}
	}
	return errors.Join(h.errs...)
}

// step is one scenario run against one route of a live subject.
type step struct {
	name string
	run  func(context.Context, *live, route)
}

// steps are the selected scenarios that share long-lived instances.
func (h *harness) steps() []step {
	var out []step
	for _, st := range []step{{"bulk", h.bulkStep}, {"new", h.newTunnelStep}, {"rtt", h.rttStep}, {"forward", h.forwardStep}, {"tls", h.tlsStep}} {
		if h.opts.runs(st.name) {
			out = append(out, st)
		}
	}
	return out
}

func (l *live) routes() []route {
	out := make([]route, 0, len(l.s.fronts))
	for _, f := range l.s.fronts {
		out = append(out, route{front: f, proxy: l.inst.addr, intercepts: l.s.intercepts})
	}
	return out
}

// cpu is the process's CPU seconds so far, or -1 for direct.
func (l *live) cpu() float64 {
	if l.inst.pid == 0 {
		return -1
	}
	s, err := cpuSeconds(l.inst.pid)
	if err != nil {
		return -1
	}
	return s
}

func (h *harness) record(l *live, f Front, m metric, v float64) {
	k := resKey{m: m, front: f, col: l.s.name}
	h.res[k] = append(h.res[k], v)
	h.log.Debug("figure", zap.String("subject", l.s.name), zap.Stringer("front", f),
		zap.String("metric", metrics[m].key), zap.Float64("value", v))
}

// note records a failure; for hopper and direct it also fails the run,
// unless it is a proxy holding fewer idle tunnels than asked: that is a
// finding the table shows, not a broken measurement.
func (h *harness) note(s *subject, f Front, what string, err error) {
	key := fmt.Sprintf("%s over %v, %s", s.name, f, what)
	fmt.Fprintf(h.out, "  FAILED: %s: %v\n", key, err)
	i := slices.IndexFunc(h.notes, func(n *note) bool { return n.what == key })
	if i < 0 {
		h.notes = append(h.notes, &note{what: key, err: err, count: 1})
	} else {
		h.notes[i].count++
	}
	if (s.own || s.name == colDirect) && !errors.Is(err, ErrIdleShort) {
		h.errs = append(h.errs, fmt.Errorf("%w: %s over %v, %s: %w", ErrMeasurement, s.name, f, what, err))
	}
}

func (h *harness) progress(l *live, r route, what string, format string, args ...any) {
	fmt.Fprintf(h.out, "  %-34s %-15s %-8v %s\n", what, l.s.name, r.front, fmt.Sprintf(format, args...))
}

func (h *harness) bulkStep(ctx context.Context, l *live, r route) {
	n := h.opts.BulkStreams
	runs := []struct {
		m       metric
		mode    byte
		streams int
	}{
		{mBulkDown1, modeDownload, 1}, {mBulkUp1, modeUpload, 1},
		{mBulkDownN, modeDownload, n}, {mBulkUpN, modeUpload, n},
	}
	cpu0 := l.cpu()
	var moved int64
	for _, run := range runs {
		what := fmt.Sprintf("bulk %s, %d tunnel(s)", modeName(run.mode), run.streams)
		res, err := bulk(ctx, h.o, r, run.mode, run.streams, h.opts.Duration)
		if err != nil {
			h.note(l.s, r.front, what, err)
			continue
		}
		moved += res.bytes
		h.record(l, r.front, run.m, res.gbits())
		h.progress(l, r, what, "%.2f Gbit/s", res.gbits())
	}
	if cpu0 >= 0 && moved > 0 {
		perGiB := (l.cpu() - cpu0) / (float64(moved) / (1 << 30))
		h.record(l, r.front, mCPUPerGiB, perGiB)
		h.progress(l, r, "relay CPU per GiB", "%.3f s", perGiB)
	}
}

func (h *harness) newTunnelStep(ctx context.Context, l *live, r route) {
	const what = "new tunnels"
	cpu0 := l.cpu()
	res := newTunnels(ctx, h.o, r, h.opts.NewTunnelConcurrency, h.opts.Duration)
	cpu1 := l.cpu()
	if res.failures > 0 || res.ops == 0 {
		h.note(l.s, r.front, what, fmt.Errorf("%d of %d tunnels failed: %w", res.failures, res.ops+res.failures, errOr(res.firstErr, errNoOps)))
	}
	if res.ops == 0 {
		return
	}
	h.record(l, r.front, mNewRate, res.perSecond())
	h.record(l, r.front, mNewP50, res.lat.percentile(50))
	h.record(l, r.front, mNewP99, res.lat.percentile(99))
	h.progress(l, r, what, "%.0f tunnels/s, p50 %.0f µs, p99 %.0f µs", res.perSecond(), res.lat.percentile(50), res.lat.percentile(99))
	if cpu0 >= 0 {
		per := (cpu1 - cpu0) / float64(res.ops) * 1000
		h.record(l, r.front, mCPUPer1000, per)
		h.progress(l, r, "relay CPU per 1,000 tunnels", "%.3f s", per)
	}
}

func (h *harness) rttStep(ctx context.Context, l *live, r route) {
	const what = "64 B echo round trip"
	res, err := echoRTT(ctx, h.o, r, h.opts.Duration)
	if err != nil {
		h.note(l.s, r.front, what, err)
		return
	}
	h.record(l, r.front, mRTTP50, res.lat.percentile(50))
	h.record(l, r.front, mRTTP99, res.lat.percentile(99))
	h.progress(l, r, what, "p50 %.1f µs, p99 %.1f µs", res.lat.percentile(50), res.lat.percentile(99))
}

func (h *harness) forwardStep(ctx context.Context, l *live, r route) {
	if !l.s.forward || r.front == FrontSOCKS5 {
		return
	}
	const what = "HTTP forward requests"
	res := forward(ctx, h.o, r, h.opts.ForwardConns, h.opts.Duration)
	if res.failures > 0 || res.ops == 0 {
		h.note(l.s, r.front, what, fmt.Errorf("%d of %d requests failed: %w", res.failures, res.ops+res.failures, errOr(res.firstErr, errNoOps)))
	}
	if res.ops == 0 {
		return
	}
	h.record(l, r.front, mFwdRate, res.perSecond())
	h.record(l, r.front, mFwdP50, res.lat.percentile(50))
	h.record(l, r.front, mFwdP99, res.lat.percentile(99))
	h.progress(l, r, what, "%.0f req/s over %d connections, p50 %.0f µs, p99 %.0f µs",
		res.perSecond(), res.conns, res.lat.percentile(50), res.lat.percentile(99))
}

func (h *harness) tlsStep(ctx context.Context, l *live, r route) {
	const what = "HTTPS requests"
	cpu0 := l.cpu()
	res := httpsRequests(ctx, h.o, r, h.roots, h.opts.ForwardConns, h.opts.Duration)
	cpu1 := l.cpu()
	if res.failures > 0 || res.ops == 0 {
		h.note(l.s, r.front, what, fmt.Errorf("%d of %d requests failed: %w", res.failures, res.ops+res.failures, errOr(res.firstErr, errNoOps)))
	}
	if res.ops > 0 {
		h.record(l, r.front, mTLSRate, res.perSecond())
		h.record(l, r.front, mTLSP50, res.lat.percentile(50))
		h.record(l, r.front, mTLSP99, res.lat.percentile(99))
		h.progress(l, r, what, "%.0f req/s over %d connections, p50 %.0f µs, p99 %.0f µs",
			res.perSecond(), res.conns, res.lat.percentile(50), res.lat.percentile(99))
		if cpu0 >= 0 {
			per := (cpu1 - cpu0) / float64(res.ops) * 1000
			h.record(l, r.front, mTLSCPU, per)
			h.progress(l, r, "proxy CPU per 1,000 HTTPS requests", "%.3f s", per)
		}
	}
	const whatNew = "new HTTPS connections"
	nc := httpsConnections(ctx, h.o, r, h.roots, h.opts.NewTunnelConcurrency, h.opts.Duration)
	if nc.failures > 0 || nc.ops == 0 {
		h.note(l.s, r.front, whatNew, fmt.Errorf("%d of %d connections failed: %w", nc.failures, nc.ops+nc.failures, errOr(nc.firstErr, errNoOps)))
	}
	if nc.ops > 0 {
		h.record(l, r.front, mTLSNewRate, nc.perSecond())
		h.record(l, r.front, mTLSNewP50, nc.lat.percentile(50))
		h.progress(l, r, whatNew, "%.0f conns/s, p50 %.0f µs", nc.perSecond(), nc.lat.percentile(50))
	}
}

func errOr(err, fallback error) error {
	if err != nil {
		return err
	}
	return fallback
}
