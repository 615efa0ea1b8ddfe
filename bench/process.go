package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrStart marks a proxy that did not start or never accepted connections.
var ErrStart = errors.New("bench: proxy did not start")

const (
	readyTimeout = 10 * time.Second
	stopGrace    = 3 * time.Second
)

// process is one proxy the harness started.
type process struct {
	name string
	addr string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done
}

// startProcess runs argv with the harness's environment, less any
// HOPPER_CPUPROFILE, plus env, and waits until addr accepts a TCP
// connection.
func startProcess(ctx context.Context, name, addr string, argv, env []string) (*process, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOPPER_CPUPROFILE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	out := &tailBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = groupAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrStart, name, err)
	}
	p := &process{name: name, addr: addr, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := p.waitReady(ctx); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", p.addr)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%w: %s exited (%v): %s", ErrStart, p.name, p.err, p.out.String())
		case <-ctx.Done():
			return fmt.Errorf("%w: %s not listening on %s: %w: %s", ErrStart, p.name, p.addr, ctx.Err(), p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop ends the process group: SIGTERM, then SIGKILL after a grace period.
// It waits for the process to be reaped.
func (p *process) stop() {
	signalGroup(p.cmd.Process, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		signalGroup(p.cmd.Process, syscall.SIGKILL)
		<-p.done
	}
	// Forked children (dante) may outlive the leader briefly.
	signalGroup(p.cmd.Process, syscall.SIGKILL)
}

// kill ends the process group at once and waits for the process to be
// reaped: for throwaway instances, whose shutdown is not being measured.
func (p *process) kill() {
	signalGroup(p.cmd.Process, syscall.SIGKILL)
	<-p.done
}

// alive reports whether the process is still running.
func (p *process) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// freeAddr finds a loopback port nobody listens on right now. The kernel
// picks one from the ephemeral range; once TIME_WAIT sockets hold all of
// those (the new-tunnel scenarios close tens of thousands of connections a
// minute) it refuses, and a random port below that range is tried instead.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if low := ephemeralLow(); err != nil && low > 2048 {
		for i := 0; err != nil && i < 100; i++ {
			ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(1024+rand.IntN(low-1024))))
		}
	}
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range, or 0 when
// it cannot be read.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	low, _ := strconv.Atoi(f[0])
	return low
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}
