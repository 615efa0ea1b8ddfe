// Command hopper-soak runs hopper for a long while under churning load
// through a rotating list of loopback upstreams, some of which fail, reset,
// stall or die mid-stream at random, and reports what was served, the errors
// by kind, and hopper's goroutines, file descriptors and RSS at the start and
// at the end, so that leaks show as growth between two idle samples.
//
// Everything runs on loopback: the origin, the upstream proxies (HTTP and
// SOCKS5), the hopper process and the clients. Run it with `make soak` or
//
//	go run ./bench/cmd/hopper-soak -duration 5m -clients 200
//
// It is not a benchmark: clients pause between requests so that the machine
// stays usable, and the figures that matter are the error kinds and the
// resource counts, not the request rate.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	duration    time.Duration
	clients     int
	upstreams   int
	think       time.Duration
	rotateEvery time.Duration
	settle      time.Duration
	hopper      string
	race        bool
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Minute, "how long the clients churn")
	flag.IntVar(&o.clients, "clients", 200, "concurrent clients")
	flag.IntVar(&o.upstreams, "upstreams", 12, "loopback upstream proxies (a third of them faulty)")
	flag.DurationVar(&o.think, "think", 20*time.Millisecond, "mean pause of a client between requests")
	flag.DurationVar(&o.rotateEvery, "rotate-every", 15*time.Second, "how often the upstream list is rewritten")
	flag.DurationVar(&o.settle, "settle", 10*time.Second, "idle time before the last sample")
	flag.StringVar(&o.hopper, "hopper", "", "hopper binary to run (default: build ./cmd/hopper)")
	flag.BoolVar(&o.race, "race", false, "build hopper with the race detector")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "hopper-soak:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, out io.Writer) error {
	if o.clients < 1 || o.upstreams < 3 || o.duration <= 0 {
		return errors.New("need -clients >= 1, -upstreams >= 3 and a positive -duration")
	}
	dir, err := os.MkdirTemp("", "hopper-soak")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	bin := o.hopper
	if bin == "" {
		fmt.Fprintln(out, "building hopper ...")
		if bin, err = buildHopper(ctx, dir, o.race); err != nil {
			return err
		}
	}

	origin, err := startOrigin()
	if err != nil {
		return err
	}
	defer origin.close()
	ups, err := startUpstreams(o.upstreams)
	if err != nil {
		return err
	}
	defer closeAll(ups)
	list := filepath.Join(dir, "upstreams.txt")
	rot := &rotator{path: list, ups: ups}
	if err := rot.write(rand.New(rand.NewPCG(1, 2)), true); err != nil {
		return err
	}

	h, err := startHopper(ctx, bin, dir, list)
	if err != nil {
		return err
	}
	defer h.kill()
	fmt.Fprintf(out, "hopper pid %d on %s; %d upstreams (%s); %d clients for %v\n",
		h.pid, h.addr, len(ups), describe(ups), o.clients, o.duration)
	if h.metrics() == "" {
		fmt.Fprintln(out, "no --admin /metrics endpoint: goroutines are not available, Threads (OS threads, from /proc) is shown instead")
	} else {
		fmt.Fprintf(out, "goroutines from %s (go_goroutines); fds and RSS from /proc/%d\n", h.metrics(), h.pid)
	}

	samples := []sample{h.sample("start (idle)")}
	drops := listenDrops()
	st := newStats()
	loadCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rot.run(loadCtx, o.rotateEvery, h)
	}()
	progress := make(chan sample, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		report(loadCtx, out, st, h, progress)
	}()
	for i := 0; i < o.clients; i++ {
		c := newClient(i, h.addr, origin, o.think, st)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(loadCtx)
		}()
	}
	wg.Wait()
	if s, ok := <-progress; ok {
		samples = append(samples, s)
	}
	samples = append(samples, h.sample("end of load"))
	if ctx.Err() == nil {
		fmt.Fprintf(out, "load stopped; idle for %v\n", o.settle)
		select {
		case <-time.After(o.settle):
		case <-ctx.Done():
		}
	}
	samples = append(samples, h.sample("end (idle)"))
	sockets := socketSummary(h.pid, h.addr, ups, origin.addr)
	exit := h.stop(15 * time.Second)

	printSummary(out, o, st, samples, ups, h, exit)
	for _, w := range h.warnings(8) {
		fmt.Fprintln(out, "  "+w)
	}
	if d := listenDrops(); d >= 0 && drops >= 0 {
		fmt.Fprintf(out, "kernel ListenDrops during the run (whole machine, every listener): %d\n", d-drops)
	}
	fmt.Fprintln(out, "hopper's TCP sockets at the idle end:")
	if len(sockets) == 0 {
		fmt.Fprintln(out, "  none")
	}
	for _, line := range sockets {
		fmt.Fprintln(out, "  "+line)
	}
	return nil
}

// describe summarises the upstream profiles, e.g. "7 healthy, 2 flaky, ...".
func describe(ups []*upstream) string {
	n := map[string]int{}
	var order []string
	for _, u := range ups {
		key := u.prof.name + " " + u.scheme
		if n[key] == 0 {
			order = append(order, key)
		}
		n[key]++
	}
	parts := make([]string, len(order))
	for i, k := range order {
		parts[i] = fmt.Sprintf("%d %s", n[k], k)
	}
	return strings.Join(parts, ", ")
}

// report prints a progress line every 30s and hands the last sample taken
// under load to progress when ctx ends.
func report(ctx context.Context, out io.Writer, st *stats, h *hopperProc, progress chan<- sample) {
	defer close(progress)
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	start := time.Now()
	var last sample
	have := false
	for {
		select {
		case <-ctx.Done():
			if have {
				progress <- last
			}
			return
		case <-tick.C:
		}
		last = h.sample(fmt.Sprintf("under load, %v", time.Since(start).Round(time.Second)))
		have = true
		ok, failed := st.totals()
		fmt.Fprintf(out, "%6s  served %8d  failed %6d  %s\n", time.Since(start).Round(time.Second), ok, failed, last.short())
	}
}

func printSummary(out io.Writer, o options, st *stats, samples []sample, ups []*upstream, h *hopperProc, exit error) {
	ok, failed := st.totals()
	fmt.Fprintf(out, "\n== hopper soak: %d clients, %v ==\n", o.clients, o.duration)
	fmt.Fprintf(out, "requests served: %d (%.0f/s), failed: %d (%.2f%%), bytes received: %d\n",
		ok, float64(ok)/o.duration.Seconds(), failed, 100*float64(failed)/float64(max(ok+failed, 1)), st.bytes.Load())
	fmt.Fprintln(out, "by protocol:")
	for _, line := range st.byMode() {
		fmt.Fprintln(out, "  "+line)
	}
	fmt.Fprintln(out, "errors by kind:")
	kinds := st.errorKinds()
	if len(kinds) == 0 {
		fmt.Fprintln(out, "  none")
	}
	for _, line := range kinds {
		fmt.Fprintln(out, "  "+line)
	}
	fmt.Fprintln(out, "upstream connections by fate:")
	fates := map[string]int64{}
	for _, u := range ups {
		for k, v := range u.fateCounts() {
			fates[k] += v
		}
	}
	keys := make([]string, 0, len(fates))
	for k := range fates {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(out, "  %-8s %d\n", k, fates[k])
	}
	fmt.Fprintln(out, "hopper process:")
	fmt.Fprintf(out, "  %-24s %10s %8s %8s %10s\n", "when", "goroutines", "threads", "fds", "RSS KiB")
	for _, s := range samples {
		fmt.Fprintln(out, "  "+s.row())
	}
	if first, last := samples[0], samples[len(samples)-1]; first.ok && last.ok {
		fmt.Fprintf(out, "  idle end - idle start: goroutines %+d, fds %+d, RSS %+d KiB\n",
			last.goroutines-first.goroutines, last.fds-first.fds, last.rssKiB-first.rssKiB)
	}
	fmt.Fprintf(out, "hopper log: %d warnings, %d errors, %d panics", h.logCount("warn"), h.logCount("error"), h.panics())
	if exit != nil {
		fmt.Fprintf(out, "; exit after SIGTERM: %v\n", exit)
	} else {
		fmt.Fprintln(out, "; exited cleanly after SIGTERM")
	}
	if h.logCount("warn")+h.logCount("error") > 0 {
		fmt.Fprintln(out, "most frequent log messages:")
	}
}

// closeAll stops every upstream.
func closeAll(ups []*upstream) {
	for _, u := range ups {
		u.close()
	}
}

// rotator rewrites the upstream list now and then, so that hopper's updater
// keeps swapping its pool under load.
type rotator struct {
	path string
	ups  []*upstream
}

// write puts every upstream in the list (all) or a random two thirds of it.
func (r *rotator) write(rng *rand.Rand, all bool) error {
	var b strings.Builder
	b.WriteString("# hopper-soak upstreams\n")
	for _, u := range r.ups {
		if all || rng.IntN(3) > 0 {
			fmt.Fprintf(&b, "%s://%s\n", u.scheme, u.addr())
		}
	}
	tmp := r.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, r.path)
}

// run rewrites the list every interval, sending SIGHUP every other time
// (the updater's refresh picks up the rest).
func (r *rotator) run(ctx context.Context, every time.Duration, h *hopperProc) {
	rng := rand.New(rand.NewPCG(3, 4))
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			_ = r.write(rng, true)
			return
		case <-tick.C:
		}
		if err := r.write(rng, false); err == nil && i%2 == 1 {
			h.hup()
		}
	}
}

// loopbackIP is 127.0.a.b for n.
func loopbackIP(a, n int) net.IP { return net.IPv4(127, 0, byte(a), byte(n)) }
