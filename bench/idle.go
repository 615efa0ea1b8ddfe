package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// idleSettle lets the proxy finish setting up the last tunnels (and
	// the kernel account their pages) before memory is read.
	idleSettle = 300 * time.Millisecond
	// idleOpenTimeout bounds opening one idle tunnel. A proxy out of
	// descriptors leaves connections in its listen backlog unanswered, so
	// this is also how long the harness waits to learn it.
	idleOpenTimeout = 5 * time.Second
)

// ErrIdleShort marks an idle-tunnel run that could not open every tunnel.
var ErrIdleShort = errors.New("bench: could not open every idle tunnel")

// idleResult is the growth of a proxy while it holds tunnels open idle.
type idleResult struct {
	tunnels int     // tunnels actually open when measured
	kib     float64 // resident memory per tunnel
	fds     float64 // descriptors per tunnel
}

// idleMemory starts a fresh instance of s, opens n tunnels through front
// (each proven by a 16-byte echo, so both of the proxy's sockets exist),
// holds them idle and returns the proxy's growth per tunnel. A small batch
// opened and closed first keeps one-time costs out of the figure. When not
// every tunnel opens, the result covers those that did and the error wraps
// ErrIdleShort.
func idleMemory(ctx context.Context, o *origins, s *subject, front Front, n int) (idleResult, error) {
	inst, err := s.start(ctx)
	if err != nil {
		return idleResult{}, err
	}
	defer inst.kill()
	r := route{front: front, proxy: inst.addr}
	warm := min(64, max(1, n/4))
	conns, err := openTunnels(ctx, o, r, warm)
	closeAll(conns)
	if err != nil {
		return idleResult{}, fmt.Errorf("warm-up: %w", err)
	}
	time.Sleep(idleSettle)
	memBefore, err := memoryKiB(inst.pid)
	if err != nil {
		return idleResult{}, err
	}
	fdBefore := descriptors(inst.pid)
	conns, openErr := openTunnels(ctx, o, r, n)
	defer closeAll(conns)
	if len(conns) == 0 {
		return idleResult{}, openErr
	}
	time.Sleep(idleSettle)
	if !inst.alive() {
		return idleResult{}, fmt.Errorf("%w: %s exited while holding %d tunnels", ErrStart, s.name, len(conns))
	}
	memAfter, err := memoryKiB(inst.pid)
	if err != nil {
		return idleResult{}, err
	}
	k := float64(len(conns))
	res := idleResult{
		tunnels: len(conns),
		kib:     float64(memAfter-memBefore) / k,
		fds:     float64(descriptors(inst.pid)-fdBefore) / k,
	}
	return res, openErr
}

// descriptors counts the open files of pid's process tree.
func descriptors(pid int) int {
	total := 0
	for _, p := range processTree(pid) {
		ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p), "fd"))
		if err == nil {
			total += len(ents)
		}
	}
	return total
}

// openTunnels opens up to n echo tunnels, 32 at a time, and returns those
// that opened. It stops at the first failure (the rest would most likely
// fail the same way, each after a timeout) and returns it wrapped in
// ErrIdleShort.
func openTunnels(ctx context.Context, o *origins, r route, n int) ([]net.Conn, error) {
	const workers = 32
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns := make([]net.Conn, n)
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		once  sync.Once
		first error
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := openIdle(ctx, o, r)
				if err != nil {
					once.Do(func() { first = err })
					cancel()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	out := conns[:0]
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	if len(out) < n {
		return out, fmt.Errorf("%w: %d of %d open: %w", ErrIdleShort, len(out), n, errOr(first, context.Cause(ctx)))
	}
	return out, nil
}

func openIdle(ctx context.Context, o *origins, r route) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, idleOpenTimeout)
	defer cancel()
	c, err := r.dial(ctx, o.echoAddr())
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(idleOpenTimeout))
	var msg, back [16]byte
	copy(msg[:], "hopper-bench-idl")
	if err := echoOnce(c, msg[:], back[:]); err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}
