package rotate

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBlockCursorsNeverOverlap: cursors of several instances on one store
// hand out every position once, whatever their block sizes.
func TestBlockCursorsNeverOverlap(t *testing.T) {
	st := NewMemoryStore(nil)
	ctx := context.Background()
	cursors := []*blockCursor{{max: 1}, {max: 7}, {max: 1024}}
	var mu sync.Mutex
	seen := map[uint64]int{}
	var wg sync.WaitGroup
	for _, c := range cursors {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 2000 {
					pos := c.position(ctx, st, "cursor")
					mu.Lock()
					seen[pos]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	for pos, n := range seen {
		require.Equal(t, 1, n, "position %d handed out %d times", pos, n)
	}
	assert.Len(t, seen, 18000)
	end, err := st.Incr(ctx, "cursor", 0, cursorTTL)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, end, int64(18000), "taken blocks cover what was handed out")
}

// TestBlockCursorSequentialIsExact: one pick at a time with max 1, the
// positions are 0, 1, 2... across two cursors taking turns.
func TestBlockCursorSequentialIsExact(t *testing.T) {
	st := NewMemoryStore(nil)
	a, b := &blockCursor{max: 1}, &blockCursor{max: 1}
	var got []uint64
	for i := range 10 {
		c := a
		if i%3 == 0 {
			c = b
		}
		got = append(got, c.position(context.Background(), st, "k"))
	}
	assert.Equal(t, []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, got)
}

// TestBlockCursorWithoutStore: an unreachable store never blocks a pick;
// positions continue from the last block.
func TestBlockCursorWithoutStore(t *testing.T) {
	st := NewMemoryStore(nil)
	c := &blockCursor{max: 1}
	ctx := context.Background()
	assert.Equal(t, uint64(0), c.position(ctx, st, "k"))
	require.NoError(t, st.Close())
	assert.Equal(t, []uint64{1, 2, 3}, []uint64{c.position(ctx, st, "k"), c.position(ctx, st, "k"), c.position(ctx, st, "k")})
}
