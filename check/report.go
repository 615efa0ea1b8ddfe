package check

import (
	"cmp"
	"slices"
	"time"

	"github.com/hopper-proxy/hopper/rotate"
)

// Percentiles summarise a set of durations (nearest rank); all zero when N
// is 0.
type Percentiles struct {
	N                       int
	Min, P50, P90, P99, Max time.Duration
}

func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	at := func(p int) time.Duration {
		i := (p*len(ds)+99)/100 - 1 // nearest rank: ceil(p/100 × n), 1-based
		return ds[min(max(i, 0), len(ds)-1)]
	}
	return Percentiles{N: len(ds), Min: ds[0], P50: at(50), P90: at(90), P99: at(99), Max: ds[len(ds)-1]}
}

// Summary counts a report's results.
type Summary struct {
	Total   int // entries given
	Checked int // entries checked (fewer when interrupted)
	// ByOutcome counts results by outcome; every outcome has a key.
	ByOutcome map[Outcome]int
	// ByAnonymity counts working results (OK or filtered) by what the judge
	// found; empty without judges.
	ByAnonymity map[rotate.Anonymity]int
	// TTFB and Connect summarise the working results.
	TTFB, Connect Percentiles
}

// Summary counts the results.
func (r *Report) Summary() Summary {
	s := Summary{
		Total: r.Total, Checked: len(r.Results),
		ByOutcome: make(map[Outcome]int, numOutcomes), ByAnonymity: make(map[rotate.Anonymity]int),
	}
	for o := range numOutcomes {
		s.ByOutcome[o] = 0
	}
	var ttfb, connect []time.Duration
	for i := range r.Results {
		res := &r.Results[i]
		s.ByOutcome[res.Outcome]++
		if !res.Outcome.Working() {
			continue
		}
		if res.Anonymity != rotate.AnonymityUnknown {
			s.ByAnonymity[res.Anonymity]++
		}
		if res.TTFB > 0 {
			ttfb = append(ttfb, res.TTFB)
		}
		if res.Connect > 0 {
			connect = append(connect, res.Connect)
		}
	}
	s.TTFB, s.Connect = percentiles(ttfb), percentiles(connect)
	return s
}

// Good returns the OK results, fastest first.
func (r *Report) Good() []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Outcome == OutcomeOK {
			out = append(out, res)
		}
	}
	slices.SortStableFunc(out, compareResults)
	return out
}

// Sorted returns every result in table order: working ones fastest first,
// then failures grouped by outcome.
func (r *Report) Sorted() []Result {
	out := slices.Clone(r.Results)
	slices.SortStableFunc(out, compareResults)
	return out
}

func compareResults(a, b Result) int {
	aw, bw := a.Outcome.Working(), b.Outcome.Working()
	switch {
	case aw && !bw:
		return -1
	case !aw && bw:
		return 1
	case aw:
		if c := cmp.Compare(a.speed(), b.speed()); c != 0 {
			return c
		}
		return cmp.Compare(a.Outcome, b.Outcome)
	}
	if c := cmp.Compare(a.Outcome, b.Outcome); c != 0 {
		return c
	}
	return cmp.Compare(a.Upstream, b.Upstream)
}
