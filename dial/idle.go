package dial

import (
	"net"
	"sync"
	"time"
)

// IdlePool keeps idle connections by key for reuse by later forward
// requests. It is bounded per key and in age; it starts no goroutines, so it
// needs no owner beyond whoever calls Close.
type IdlePool struct {
	// MaxPerKey bounds idle connections per key (default 8).
	MaxPerKey int
	// MaxAge closes connections idle for longer (default 60s).
	MaxAge time.Duration

	mu        sync.Mutex
	idle      map[string][]idleConn
	closed    bool
	lastSweep time.Time
}

type idleConn struct {
	c     net.Conn
	since time.Time
}

// Get returns an idle connection for key, or nil.
func (p *IdlePool) Get(key string) net.Conn {
	maxAge := p.maxAge()
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	for len(list) > 0 {
		ic := list[len(list)-1]
		list = list[:len(list)-1]
		if now.Sub(ic.since) < maxAge {
			p.store(key, list)
			return ic.c
		}
		_ = ic.c.Close()
	}
	p.store(key, list)
	return nil
}

func (p *IdlePool) store(key string, list []idleConn) {
	if len(list) == 0 {
		delete(p.idle, key)
		return
	}
	p.idle[key] = list
}

// Put keeps c idle under key, closing the oldest idle connection when the
// key is full, or c itself once the pool is closed.
func (p *IdlePool) Put(key string, c net.Conn) {
	max := p.MaxPerKey
	if max <= 0 {
		max = 8
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return
	}
	if p.idle == nil {
		p.idle = make(map[string][]idleConn)
	}
	now := time.Now()
	if now.Sub(p.lastSweep) > p.maxAge()/2 {
		p.sweepLocked(now)
	}
	list := p.idle[key]
	if len(list) >= max {
		_ = list[0].c.Close()
		list = append(list[:0], list[1:]...)
	}
	p.idle[key] = append(list, idleConn{c: c, since: now})
}

func (p *IdlePool) maxAge() time.Duration {
	if p.MaxAge <= 0 {
		return 60 * time.Second
	}
	return p.MaxAge
}

// sweepLocked closes connections idle past MaxAge under every key, so keys
// nobody asks for again (an upstream dropped from the list, a target never
// revisited) do not keep theirs until exit. Put runs it at most twice per
// MaxAge, so no goroutine is needed.
func (p *IdlePool) sweepLocked(now time.Time) {
	p.lastSweep = now
	maxAge := p.maxAge()
	for k, list := range p.idle {
		kept := list[:0]
		for _, ic := range list {
			if now.Sub(ic.since) < maxAge {
				kept = append(kept, ic)
			} else {
				_ = ic.c.Close()
			}
		}
		p.store(k, kept)
	}
}

// Close closes every idle connection; later Puts close theirs at once.
func (p *IdlePool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for k, list := range p.idle {
		for _, ic := range list {
			_ = ic.c.Close()
		}
		delete(p.idle, k)
	}
	return nil
}
