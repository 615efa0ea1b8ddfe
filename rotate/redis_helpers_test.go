package rotate

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

// redisServer is a redis-server process on a free loopback port, without
// persistence, killed at cleanup. Tests never skip without it: .ci/deps
// installs the Debian package.
type redisServer struct {
	t    testing.TB
	port int
	dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

func startRedis(t testing.TB) *redisServer {
	t.Helper()
	_, err := exec.LookPath("redis-server")
	require.NoError(t, err, "redis-server is required (apt-get install redis-server, or .ci/deps)")
	s := &redisServer{t: t, dir: t.TempDir()}
	var lastErr error
	for range 5 {
		s.port = freePort(t)
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.stop)
			return s
		}
	}
	require.NoError(t, lastErr, "starting redis-server")
	return nil
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

func (s *redisServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// url names database 0 of the server.
func (s *redisServer) url() string { return "redis://" + s.addr() + "/0" }

// start runs the server on s.port and waits until it answers PING.
func (s *redisServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &bytes.Buffer{}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(s.addr()) == nil {
			s.cmd, s.out, s.done = cmd, out, done
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited: %s", out)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server did not answer PING: %s", out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ping sends one inline PING and wants +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// stop kills the server (as a crash would) and waits for it.
func (s *redisServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// restart starts a fresh (empty) server on the same port.
func (s *redisServer) restart() {
	s.t.Helper()
	s.stop()
	require.NoError(s.t, s.start())
}

// pause freezes the server (SIGSTOP): connections stay open, nothing
// answers, as with a server that is stuck or far too slow.
func (s *redisServer) pause() { s.signal(syscall.SIGSTOP) }

func (s *redisServer) resume() { s.signal(syscall.SIGCONT) }

func (s *redisServer) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// client is a plain go-redis client for inspecting the server.
func (s *redisServer) client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.addr(), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newTestRedisStore opens a store on srv under prefix, closed at cleanup.
func newTestRedisStore(t testing.TB, srv *redisServer, prefix string, log *zap.Logger) *RedisStore {
	t.Helper()
	if log == nil {
		log = zaptest.NewLogger(t)
	}
	// A generous timeout: on a loaded 2-core machine under -race, 250ms is
	// sometimes missed, and a store that degrades falls back to local
	// state, which tests of sharing would then see.
	st, err := NewRedisStore(RedisConfig{URL: srv.url(), Prefix: prefix, Logger: log, Timeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// resyncSignals subscribes to st's channel "ch" until the end of the test
// and passes on each resynchronisation signal (a nil message) it gets; buf
// is how many may wait unread.
func resyncSignals(t testing.TB, st *RedisStore, buf int) <-chan struct{} {
	syncs := make(chan struct{}, buf)
	testnet.Go(t, "subscriber", func(ctx context.Context) error {
		_ = st.Subscribe(ctx, "ch", func(msg []byte) {
			if msg == nil {
				syncs <- struct{}{}
			}
		})
		return nil // the tests look at the store's health, not at this error
	})
	return syncs
}

// requireAllKeysExpire fails if any key on the server has no TTL.
func requireAllKeysExpire(t testing.TB, c *redis.Client) int {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		ttl, err := c.PTTL(ctx, k).Result()
		require.NoError(t, err)
		require.True(t, ttl > 0 || ttl == -2*time.Nanosecond, "key %q has no TTL (%v)", k, ttl)
	}
	return len(keys)
}
