package bench

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

// Column names of the report, in order.
const (
	colDirect    = "direct"
	colHopper    = "hopper"
	colChained   = "hopper chained"
	colMITM      = "hopper MITM"
	colBare      = "bare relay"
	colBareChain = "bare relay chained"
	colTinyproxy = "tinyproxy"
	colDante     = "dante"
	colGlider    = "glider"
)

// subject is one column of the table: a way to carry tunnels that the
// harness can start fresh whenever it needs to.
type subject struct {
	name    string
	fronts  []Front
	forward bool // serves absolute-form HTTP forward requests
	// start launches a fresh instance; nil for direct, which has no process.
	start func(ctx context.Context) (*instance, error)
	// absent, when set, says why the subject was not measured.
	absent string
	// own marks hopper's columns: their failures fail the run.
	own bool
	// only, when set, is the one scenario the subject is measured in.
	only string
	// intercepts marks a subject that terminates TLS (MITM).
	intercepts bool
}

// measures reports whether s takes part in scenario.
func (s *subject) measures(scenario string) bool { return s.only == "" || s.only == scenario }

// instance is a running subject. Direct has addr "" and pid 0.
type instance struct {
	addr string
	pid  int
	// stop ends the instance gracefully (SIGTERM, then SIGKILL after
	// stopGrace); kill ends it at once. Both wait for the processes.
	stop, kill func()
	alive      func() bool
}

func directSubject() *subject {
	return &subject{name: colDirect, fronts: []Front{FrontDirect}, forward: true}
}

// startDirect is the no-process instance of the direct column.
func startDirect() *instance {
	return &instance{stop: func() {}, kill: func() {}, alive: func() bool { return true }}
}

// hopperLauncher starts hopper processes.
type hopperLauncher struct {
	bin      string
	extra    []string // more `hopper serve` arguments
	profiles string   // CPU profile directory; empty: none
	n        atomic.Int64
}

// hopperSubject runs `hopper serve` directly reachable by the client.
func hopperSubject(hl *hopperLauncher) *subject {
	return &subject{
		name:    colHopper,
		fronts:  []Front{FrontCONNECT, FrontSOCKS5},
		forward: true,
		own:     true,
		start: func(ctx context.Context) (*instance, error) {
			p, err := hl.start(ctx, colHopper, "")
			if err != nil {
				return nil, err
			}
			return processInstance(p), nil
		},
	}
}

// chainedSubject runs hopper with a one-entry upstream list naming a second
// hopper instance: client → hopper → hopper → origin. Its process figures
// (CPU, memory) are those of the first hopper only.
func chainedSubject(hl *hopperLauncher, dir string) *subject {
	return &subject{
		name:    colChained,
		fronts:  []Front{FrontCONNECT, FrontSOCKS5},
		forward: true,
		own:     true,
		start: func(ctx context.Context) (*instance, error) {
			up, err := hl.start(ctx, "upstream hopper", "")
			if err != nil {
				return nil, err
			}
			list, err := os.CreateTemp(dir, "upstreams-*.txt")
			if err == nil {
				_, err = fmt.Fprintf(list, "http://%s\n", up.addr)
				if cerr := list.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				up.stop()
				return nil, fmt.Errorf("upstream list: %w", err)
			}
			front, err := hl.start(ctx, colChained, list.Name())
			if err != nil {
				up.stop()
				return nil, err
			}
			return pairInstance(front, up), nil
		},
	}
}

// mitmSubject runs hopper with --mitm and a CA made for the run in dir: the
// client trusts that CA, hopper re-originates TLS to the origin with the
// chrome profile (--insecure-origin: the origin's certificate is
// self-signed). Only the HTTPS scenario measures it, and over CONNECT only:
// everything else would measure plain tunnels again, and hopper intercepts
// SOCKS streams to port 443 alone, which the origin's random port is not.
func mitmSubject(hl *hopperLauncher, dir string, roots *x509.CertPool) *subject {
	return &subject{
		name:   colMITM,
		fronts: []Front{FrontCONNECT},
		own:    true,
		only:   "tls",
		// The HTTPS client checks every connection was intercepted.
		intercepts: true,
		start: func(ctx context.Context) (*instance, error) {
			caDir := filepath.Join(dir, "mitm-ca")
			cmd := exec.CommandContext(ctx, hl.bin, "ca", "init", "--ca-dir", caDir)
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("%w: hopper ca init: %w: %s", ErrStart, err, strings.TrimSpace(string(out)))
			}
			pem, err := os.ReadFile(filepath.Join(caDir, "ca.pem"))
			if err != nil {
				return nil, fmt.Errorf("%w: MITM CA: %w", ErrStart, err)
			}
			if !roots.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: MITM CA: %s holds no certificate", ErrStart, caDir)
			}
			p, err := hl.start(ctx, colMITM, "", "--mitm", "--ca-dir", caDir, "--insecure-origin", "--profile", "chrome")
			if err != nil {
				return nil, err
			}
			return processInstance(p), nil
		},
	}
}

// bareSubject runs argv with BareRelayEnv set: ServeBareRelay, the floor
// every proxy column stands on. It has no forward mode and does not
// intercept, so it shares the tunnel rows only.
func bareSubject(argv []string) *subject {
	s := &subject{name: colBare, fronts: []Front{FrontCONNECT, FrontSOCKS5}}
	if len(argv) == 0 {
		s.absent = "not run (Options.BareRelay unset)"
		return s
	}
	s.start = func(ctx context.Context) (*instance, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		p, err := startProcess(ctx, colBare, addr, argv, []string{BareRelayEnv + "=" + addr})
		if err != nil {
			return nil, err
		}
		return processInstance(p), nil
	}
	return s
}

// bareChainedSubject is the bare relay in front of a second bare relay,
// which it reaches every target through with a CONNECT: the floor of
// chained mode. Its process figures are those of the first relay, as for
// hopper chained.
func bareChainedSubject(argv []string) *subject {
	s := &subject{name: colBareChain, fronts: []Front{FrontCONNECT, FrontSOCKS5}}
	if len(argv) == 0 {
		s.absent = "not run (Options.BareRelay unset)"
		return s
	}
	start := func(ctx context.Context, name string, env ...string) (*process, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		return startProcess(ctx, name, addr, argv, append(env, BareRelayEnv+"="+addr))
	}
	s.start = func(ctx context.Context) (*instance, error) {
		up, err := start(ctx, "upstream bare relay")
		if err != nil {
			return nil, err
		}
		front, err := start(ctx, colBareChain, BareUpstreamEnv+"="+up.addr)
		if err != nil {
			up.stop()
			return nil, err
		}
		return pairInstance(front, up), nil
	}
	return s
}

// pairInstance is a front process and the upstream it needs, started and
// stopped together; its figures are the front's.
func pairInstance(front, up *process) *instance {
	return &instance{
		addr:  front.addr,
		pid:   front.pid(),
		stop:  func() { stopAll(front.stop, up.stop) },
		kill:  func() { stopAll(front.kill, up.kill) },
		alive: func() bool { return front.alive() && up.alive() },
	}
}

// start runs `hopper serve` on a free loopback port, with an upstream list
// file unless upstreams is empty.
func (hl *hopperLauncher) start(ctx context.Context, name, upstreams string, args ...string) (*process, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	argv := []string{hl.bin, "serve", "--listen", addr, "--log-level", "error"}
	if upstreams != "" {
		argv = append(argv, "--upstreams", upstreams)
	}
	argv = append(argv, args...)
	argv = append(argv, hl.extra...)
	var env []string
	if hl.profiles != "" {
		file := fmt.Sprintf("%s-%d.prof", strings.ReplaceAll(name, " ", "-"), hl.n.Add(1))
		env = append(env, "HOPPER_CPUPROFILE="+filepath.Join(hl.profiles, file))
	}
	return startProcess(ctx, name, addr, argv, env)
}

// stopAll runs the stop functions at once (each waits up to stopGrace) and
// returns when all are done.
func stopAll(stops ...func()) {
	var wg sync.WaitGroup
	for _, stop := range stops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop()
		}()
	}
	wg.Wait()
}

func processInstance(p *process) *instance {
	return &instance{addr: p.addr, pid: p.pid(), stop: p.stop, kill: p.kill, alive: p.alive}
}

// buildHopper compiles ./cmd/hopper of the module at dir into out, with
// extra go build flags.
func buildHopper(ctx context.Context, dir, out string, flags ...string) error {
	args := append([]string{"build"}, flags...)
	args = append(args, "-o", out, "./cmd/hopper")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	msg, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: go build ./cmd/hopper: %w: %s", ErrStart, err, strings.TrimSpace(string(msg)))
	}
	return nil
}

// moduleRoot finds the nearest directory holding go.mod from the working
// directory upwards.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%w: no go.mod above the working directory; set Options.ModuleDir or HopperBin", ErrOptions)
		}
		dir = parent
	}
}
