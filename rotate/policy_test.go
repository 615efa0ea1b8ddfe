package rotate

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seeded gives s a deterministic random source.
func seeded(s *Selector, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s.randN = r.Uint64N
}

// distribution picks n times and returns each upstream's share.
func distribution(t *testing.T, s *Selector, policy Policy, ups []*Upstream, n int) []float64 {
	t.Helper()
	idx := make(map[*Upstream]int)
	for i, u := range ups {
		idx[u] = i
	}
	counts := make([]float64, len(ups))
	for range n {
		u, err := s.Pick(policy)
		require.NoError(t, err)
		counts[idx[u]]++
	}
	for i := range counts {
		counts[i] /= float64(n)
	}
	return counts
}

func assertShares(t *testing.T, want, got []float64, tol float64, msg string) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		assert.InDelta(t, want[i], got[i], tol, "%s: upstream %d: got %v, want %v", msg, i, got, want)
	}
}

func TestPolicyDistributions(t *testing.T) {
	const n = 40000
	ups := upstreamsN(t, 4)
	var s Selector
	s.Store(ups)
	seeded(&s, 1)

	assertShares(t, []float64{.25, .25, .25, .25}, distribution(t, &s, PolicyRoundRobin, ups, n), 0, "round-robin is exact")
	assertShares(t, []float64{.25, .25, .25, .25}, distribution(t, &s, PolicyRandom, ups, n), 0.015, "random")

	// Least latency, two random choices: ranks get 1/2, 1/3, 1/6, 0.
	for i, ms := range []int64{30, 10, 40, 20} {
		ups[i].probeLatency.Store(ms * int64(time.Millisecond))
	}
	assertShares(t, []float64{1.0 / 6, 1.0 / 2, 0, 1.0 / 3}, distribution(t, &s, PolicyLeastLatency, ups, n), 0.015, "least-latency")

	// Weighted: rate² × best/latency.
	for i, ms := range []int64{10, 20, 40, 10} {
		ups[i].probeLatency.Store(ms * int64(time.Millisecond))
	}
	for range 100 { // upstream 3 fails about half the time
		ups[3].recordRate(true)
		ups[3].recordRate(false)
	}
	s.RefreshWeights()
	rate3 := ups[3].successRate()
	require.InDelta(t, 0.5, rate3, 0.06)
	w := []float64{1, 0.5, 0.25, rate3 * rate3}
	sum := w[0] + w[1] + w[2] + w[3]
	for i := range w {
		w[i] /= sum
	}
	assertShares(t, w, distribution(t, &s, PolicyWeighted, ups, n), 0.015, "weighted")
	assert.InDelta(t, 0.5, ups[1].Stats().Score(10*time.Millisecond), 1e-9)
}

func TestLeastLatencyTriesUnmeasuredFirst(t *testing.T) {
	ups := upstreamsN(t, 2)
	var s Selector
	s.Store(ups)
	seeded(&s, 2)
	ups[0].latency.Store(int64(time.Millisecond))
	for range 20 {
		u, err := s.Pick(PolicyLeastLatency)
		require.NoError(t, err)
		assert.Same(t, ups[1], u, "an upstream without a measurement gets one")
	}
	ups[1].latency.Store(int64(2 * time.Millisecond))
	u, _ := s.Pick(PolicyLeastLatency)
	assert.Same(t, ups[0], u)
	one := upstreamsN(t, 1)
	s.Store(one)
	u, _ = s.Pick(PolicyLeastLatency)
	assert.Same(t, one[0], u)
}

func TestPickDoesNotAllocate(t *testing.T) {
	var s Selector
	ups := upstreamsN(t, 100)
	for i, u := range ups {
		u.probeLatency.Store(int64(i+1) * int64(time.Millisecond))
	}
	s.Store(ups)
	for _, p := range []Policy{PolicyRoundRobin, PolicyRandom, PolicyLeastLatency, PolicyWeighted} {
		_, _ = s.Pick(p) // builds the weights once
		allocs := testing.AllocsPerRun(1000, func() { _, _ = s.Pick(p) })
		assert.Zero(t, allocs, p.String())
	}
}

func TestParsePolicy(t *testing.T) {
	for _, name := range []string{"round-robin", "random", "least-latency", "weighted"} {
		p, err := ParsePolicy(name)
		require.NoError(t, err)
		assert.Equal(t, name, p.String())
		b, err := p.MarshalText()
		require.NoError(t, err)
		var back Policy
		require.NoError(t, back.UnmarshalText(b))
		assert.Equal(t, p, back)
	}
	p, err := ParsePolicy("")
	require.NoError(t, err)
	assert.Equal(t, PolicyDefault, p)
	for _, bad := range []string{"roundrobin", "Random", "fastest"} {
		_, err := ParsePolicy(bad)
		assert.True(t, errors.Is(err, ErrBadPolicy), bad)
	}
	assert.ErrorIs(t, Policy(42).Validate(), ErrBadPolicy)
	assert.ErrorIs(t, (&Config{Policy: 42}).Validate(), ErrBadConfig)
}

func BenchmarkPick(b *testing.B) {
	for _, p := range []Policy{PolicyRoundRobin, PolicyRandom, PolicyLeastLatency, PolicyWeighted} {
		b.Run(fmt.Sprint(p, "/10000"), func(b *testing.B) {
			var s Selector
			ups := upstreamsN(b, 10000)
			for i, u := range ups {
				u.probeLatency.Store(int64(i%100+1) * int64(time.Millisecond))
			}
			s.Store(ups)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if u, err := s.Pick(p); u == nil || err != nil {
						b.Fatal("no upstream")
					}
				}
			})
		})
	}
}
