package rotate

import (
	"context"
	"sync"
	"time"
)

// Sync keeps the pool's share of its store until ctx ends, then returns nil
// (Router.Run runs it for every pool). It renews the reservations of live
// connections (every third of Config.ReserveTTL), and with a shared store
// it also pushes this instance's health changes (quarantines, early
// releases), applies other instances' as they are published, and compares
// the whole pool with the store every Config.SyncInterval and whenever the
// store comes back after being unreachable. Without Sync a pool works
// alone: picks, sessions and reservations still use the store, but health
// changes stay local and reservations expire after ReserveTTL.
func (p *Pool) Sync(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if p.shared {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.store.Subscribe(ctx, p.key("health"), func(msg []byte) { p.onHealthEvent(ctx, msg) })
		}()
	}
	renew := time.NewTicker(max(p.reserveTTL/3, time.Millisecond))
	defer renew.Stop()
	resync := time.NewTicker(p.syncEvery)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u := <-p.dirty:
			p.pushHealth(ctx, u)
		case <-p.resyncNow:
			p.resyncHealth(ctx)
		case <-resync.C:
			if p.shared {
				p.resyncHealth(ctx)
			}
		case <-renew.C:
			p.renewLeases(ctx)
		}
	}
}

// askResync makes Sync compare the pool with the store soon (after a
// reload brought new upstreams, whose health the store may know).
func (p *Pool) askResync() {
	if !p.shared {
		return
	}
	select {
	case p.resyncNow <- struct{}{}:
	default:
	}
}
