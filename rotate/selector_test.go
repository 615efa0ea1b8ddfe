package rotate

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

func upstreamsN(t testing.TB, n int) []*Upstream {
	ups := make([]*Upstream, n)
	for i := range ups {
		ups[i] = NewUpstream(Entry{Scheme: SchemeHTTP, Host: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Port: 8080})
	}
	return ups
}

func TestSelectorRoundRobinAndWrap(t *testing.T) {
	var s Selector
	_, err := s.Next()
	assert.True(t, errors.Is(err, dial.ErrNoUpstream))
	s.Store(nil)
	_, err = s.Next()
	assert.True(t, errors.Is(err, dial.ErrNoUpstream))

	ups := upstreamsN(t, 3)
	s.Store(ups)
	for i := range 10 {
		u, err := s.Next()
		require.NoError(t, err)
		assert.Same(t, ups[i%3], u, "pick %d", i)
	}
	u, err := s.At(4)
	require.NoError(t, err)
	assert.Same(t, ups[1], u)
}

func TestSelectorConcurrentPicksAreDistinct(t *testing.T) {
	const n = 64
	var s Selector
	ups := upstreamsN(t, n)
	s.Store(ups)
	var wg sync.WaitGroup
	start := make(chan struct{})
	got := make([]*Upstream, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got[i], _ = s.Next()
		}()
	}
	close(start)
	wg.Wait()
	seen := make(map[*Upstream]bool)
	for _, u := range got {
		require.NotNil(t, u)
		assert.False(t, seen[u], "upstream %s picked twice", u)
		seen[u] = true
	}
	assert.Len(t, seen, n)
}

func TestSelectorNextDoesNotAllocate(t *testing.T) {
	var s Selector
	s.Store(upstreamsN(t, 100))
	allocs := testing.AllocsPerRun(1000, func() { _, _ = s.Next() })
	assert.Zero(t, allocs)
}

// mutexSelector is the obvious locked round robin, kept for comparison.
type mutexSelector struct {
	mu  sync.Mutex
	ups []*Upstream
	i   int
}

func (s *mutexSelector) Next() (*Upstream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ups) == 0 {
		return nil, dial.ErrNoUpstream
	}
	u := s.ups[s.i%len(s.ups)]
	s.i++
	return u, nil
}

func BenchmarkNext(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var s Selector
			s.Store(upstreamsN(b, n))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if u, err := s.Next(); u == nil || err != nil {
						b.Fatal("no upstream")
					}
				}
			})
		})
	}
}

func BenchmarkNextMutex(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := &mutexSelector{ups: upstreamsN(b, n)}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if u, err := s.Next(); u == nil || err != nil {
						b.Fatal("no upstream")
					}
				}
			})
		})
	}
}
