package rotate

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// blockCursor hands out round-robin positions from a counter shared by
// every instance: it takes a block of positions at a time (INCRBY n) and
// then serves picks from it with one atomic add, so the store is called once
// per block and never by most picks. Every instance maps a position onto
// the same healthy snapshot, so together they walk the upstreams in one
// rotation. The pick that reaches the middle of a block of four or more
// takes the next block meanwhile, so the others never wait for the store;
// smaller blocks (light traffic) are taken when used up, which keeps the
// rotation exact across instances. When the store is unreachable, positions
// continue locally from the last block; the rotation is then per instance
// until it returns.
type blockCursor struct {
	blk  atomic.Pointer[cursorBlock]
	next atomic.Pointer[cursorBlock] // taken ahead by the middle pick

	mu    sync.Mutex // serialises refills; picks from a block never take it
	size  int64      // the last block's size
	max   int64
	last  time.Time // when the last block was taken
	local atomic.Uint64
}

type cursorBlock struct {
	start, n uint64
	used     atomic.Uint64
}

// cursorTTL keeps an idle pool's cursor for a day.
const cursorTTL = 24 * time.Hour

// blockPeriod is how long a block should last at the current pick rate.
const blockPeriod = 10 * time.Millisecond

// take returns the next position of the current block, if it has one left,
// and whether this pick should take the next block ahead.
func (c *blockCursor) take() (pos uint64, ok, ahead bool) {
	b := c.blk.Load()
	if b == nil {
		return 0, false, false
	}
	k := b.used.Add(1) - 1
	if k >= b.n {
		return 0, false, false
	}
	return b.start + k, true, b.n >= 4 && k == b.n/2
}

// position returns the next position (see blockCursor).
func (c *blockCursor) position(ctx context.Context, store Store, key string) uint64 {
	pos, ok, ahead := c.take()
	if ok {
		if ahead {
			c.takeAhead(ctx, store, key)
		}
		return pos
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if pos, ok, _ := c.take(); ok {
			return pos
		}
		nb := c.next.Swap(nil)
		if nb == nil {
			break
		}
		c.blk.Store(nb)
	}
	nb, err := c.fetch(ctx, store, key)
	if err != nil {
		return c.local.Add(1) - 1
	}
	nb.used.Store(1)
	c.blk.Store(nb)
	return nb.start
}

// takeAhead fetches the block after the current one, unless a refill is
// under way.
func (c *blockCursor) takeAhead(ctx context.Context, store Store, key string) {
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	if c.next.Load() != nil {
		return
	}
	if nb, err := c.fetch(ctx, store, key); err == nil {
		c.next.Store(nb)
	}
}

// fetch takes a block from the store; called with c.mu held.
func (c *blockCursor) fetch(ctx context.Context, store Store, key string) (*cursorBlock, error) {
	n := c.nextSize(time.Now())
	end, err := store.Incr(storeCtx(ctx), key, n, cursorTTL)
	if err != nil {
		return nil, err
	}
	c.local.Store(uint64(end))
	return &cursorBlock{start: uint64(end - n), n: uint64(n)}, nil
}

// nextSize sizes the next block to last about blockPeriod at the rate the
// last one was used, between 1 and max.
func (c *blockCursor) nextSize(now time.Time) int64 {
	if c.size == 0 || c.last.IsZero() {
		c.size = 1
	} else if el := now.Sub(c.last); el > 0 {
		c.size = int64(float64(c.size) * float64(blockPeriod) / float64(el))
	} else {
		c.size *= 2
	}
	c.size = min(max(c.size, 1), c.max)
	c.last = now
	return c.size
}
