package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/mitm"
	"github.com/hopper-proxy/hopper/rotate"
)

// sessionCookieOrigin is an HTTPS origin (httptest's certificate; hopper
// runs with --insecure-origin) that gives a visitor without cookie sid a
// new number and answers "ua=<User-Agent> cookie=<sid it was sent>".
func sessionCookieOrigin(t *testing.T) *httptest.Server {
	var n atomic.Int64
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent := ""
		if c, err := r.Cookie("sid"); err == nil {
			sent = c.Value
		} else {
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: fmt.Sprint(n.Add(1)), Path: "/", MaxAge: 3600})
		}
		fmt.Fprintf(w, "ua=%s cookie=%s", r.UserAgent(), sent)
	}))
	o.EnableHTTP2 = true
	o.StartTLS()
	t.Cleanup(o.Close)
	return o
}

// originSeen is what the origin saw of one request.
type originSeen struct{ ua, cookie string }

func redisClient(t *testing.T, rs *redisProc) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: rs.addr(), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestServeSharedIdentitiesTwoInstances runs two hopper processes with
// --mitm on one Redis: a fresh client through B reaches the origin with the
// cookie set through A and A's browser profile; A's rotation is taken up by
// B; with Redis gone mid-traffic every request still succeeds.
func TestServeSharedIdentitiesTwoInstances(t *testing.T) {
	rs := startRedisServer(t)
	origin := sessionCookieOrigin(t)
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	target := "https://localhost:" + port + "/"
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	code, _, stderr := runCmd("ca", "init", "--ca-dir", caDir)
	require.Equal(t, 0, code, stderr)
	caPEM, err := os.ReadFile(filepath.Join(caDir, mitm.CACertFile))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	list := filepath.Join(dir, "list.txt")
	require.NoError(t, os.WriteFile(list, []byte("direct://127.0.0.1\n"), 0o600))
	conf := filepath.Join(dir, "hopper.yaml")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`upstreams: [%s]
state: redis://%s/0?timeout=2s
state-prefix: mitm-e2e
probe-interval: 0s
mitm: true
ca-dir: %s
insecure-origin: true
profile: random
rotate-after-requests: 3
`, list, rs.addr(), caDir)), 0o600))
	a := startHopper(t, "--config", conf)
	b := startHopper(t, "--config", conf)
	rec := a.records("intercepting TLS")
	require.Len(t, rec, 1, a.log())
	assert.Equal(t, true, rec[0]["shared_identities"])

	// A fresh client each time: a new tunnel, a new TLS session, no
	// cookies of its own.
	client := func(h *proc) *http.Client {
		return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			Proxy:             http.ProxyURL(mustURL("http://" + h.Addr)),
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			DisableKeepAlives: true,
			ForceAttemptHTTP2: true,
		}}
	}
	visit := func(h *proc) originSeen {
		t.Helper()
		resp, err := client(h).Get(target)
		require.NoError(t, err)
		body := readAll(resp)
		require.Equal(t, 200, resp.StatusCode, body)
		rest, ok := strings.CutPrefix(body, "ua=")
		require.True(t, ok, body)
		ua, cookie, ok := strings.Cut(rest, " cookie=")
		require.True(t, ok, body)
		return originSeen{ua, cookie}
	}

	first := visit(a)
	assert.Empty(t, first.cookie, "a first visit")
	rc := redisClient(t, rs)
	ctx := context.Background()
	keys, err := rc.Keys(ctx, "mitm-e2e:identity/*").Result()
	require.NoError(t, err)
	require.Equal(t, []string{"mitm-e2e:identity/direct@127.0.0.1/localhost"}, keys)
	ttl, err := rc.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	assert.True(t, ttl > 0 && ttl <= mitm.DefaultSharedTTL, "the record expires (%v)", ttl)
	blob, err := rc.Get(ctx, keys[0]).Result()
	require.NoError(t, err)
	assert.Contains(t, blob, `"name":"sid","value":"1"`, "the cookie A's visit got is in the record")

	assert.Equal(t, originSeen{first.ua, "1"}, visit(b), "B sends A's cookie with A's profile")
	assert.Equal(t, originSeen{first.ua, "1"}, visit(a))

	// Three requests through A spend its identity: the next one rotates it
	// (a new profile, an empty jar), and B takes that up.
	visit(a)
	rotated := visit(a)
	assert.Empty(t, rotated.cookie, "the new identity starts with an empty jar")
	assert.NotEqual(t, first.ua, rotated.ua, "and another profile")
	assert.Equal(t, originSeen{rotated.ua, "2"}, visit(b), "B shows A's new identity")
	assert.Equal(t, originSeen{rotated.ua, "2"}, visit(a))

	// Redis goes away mid-traffic and comes back empty: every request
	// still succeeds, on the identities each instance holds.
	failures := trafficThroughRedisOutage(t, rs, 4, func(w int) (*http.Client, string) {
		if w%2 == 1 {
			return client(b), target
		}
		return client(a), target
	}, [3]int{20, 60, 40}, 60*time.Second)
	assert.Empty(t, failures)
	for _, h := range []*proc{a, b} {
		assert.Len(t, h.records("shared state unreachable; serving from local state until it returns"), 1, "logged once")
	}
	rc2 := redisClient(t, rs)
	require.Eventually(t, func() bool {
		visit(a)
		keys, err := rc2.Keys(ctx, "mitm-e2e:identity/*").Result()
		return err == nil && len(keys) == 1
	}, 20*time.Second, 100*time.Millisecond, "the identity is written again once Redis is back")
}

// TestServeReservationOutlivesKilledInstance: a reservation held by an
// instance that is killed (no release) keeps its exit until
// --reservation-ttl runs out: the other instance answers 503 meanwhile when
// it may not wait, and gets the exit once the TTL expires when it may.
func TestServeReservationOutlivesKilledInstance(t *testing.T) {
	rs := startRedisServer(t)
	origin := sourceOrigin(t)
	_, port, _ := net.SplitHostPort(origin)
	dir := t.TempDir()
	single := filepath.Join(dir, "single.txt")
	require.NoError(t, os.WriteFile(single, []byte("direct://127.0.0.226\n"), 0o600))
	conf := filepath.Join(dir, "hopper.yaml")
	const ttl = 4 * time.Second
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`pools:
  shop: { upstreams: [%s] }
rules:
  - { host: localhost, pool: shop, reserve: true }
  - { host: "*", pool: shop }
state: redis://%s/0?timeout=2s
state-prefix: ttl-e2e
reservation-ttl: %s
max-queue-wait: 200ms
probe-interval: 0s
`, single, rs.addr(), ttl)), 0o600))
	a := startHopper(t, "--config", conf)
	short := startHopper(t, "--config", conf)
	patient := startHopper(t, "--config", conf, "--max-queue-wait", "30s")

	get := func(h *proc, target string) (int, string) {
		client := &http.Client{Timeout: 40 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(mustURL("http://" + h.Addr)), DisableKeepAlives: true}}
		resp, err := client.Get("http://" + target + "/")
		require.NoError(t, err)
		readAll(resp)
		return resp.StatusCode, resp.Header.Get("Hopper-Error")
	}

	// A holds the only exit for the reserved host with a tunnel.
	shop := "localhost:" + port
	holdTunnel(t, a, shop)
	code, kind := get(short, shop)
	assert.Equal(t, 503, code)
	assert.Equal(t, "no-upstream", kind)

	rc := redisClient(t, rs)
	ctx := context.Background()
	keys, err := rc.Keys(ctx, "ttl-e2e:reserve:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)

	// Killed: nothing releases the reservation.
	a.signal(syscall.SIGKILL)
	<-a.done
	left, err := rc.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	require.Greater(t, left, time.Duration(0), "still held after the kill")
	code, kind = get(short, shop)
	assert.Equal(t, 503, code, "before the TTL runs out (%v left at the kill)", left)
	assert.Equal(t, "no-upstream", kind)

	start := time.Now()
	code, _ = get(patient, shop)
	assert.Equal(t, 200, code, "the exit is free once the TTL expired")
	t.Logf("waited %v for the dead instance's reservation (%v left at the kill, TTL %v)", time.Since(start).Round(time.Millisecond), left.Round(time.Millisecond), ttl)
	require.Eventually(t, func() bool {
		n, err := rc.Exists(ctx, keys[0]).Result()
		return err == nil && n == 0
	}, 10*time.Second, 20*time.Millisecond, "the patient instance releases its own reservation when its request ends")
}

func TestReservationTTLFlag(t *testing.T) {
	cfg, err := parseServe(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 30*time.Second, cfg.ReservationTTL)
	cfg.Upstreams = []string{"list.txt"}
	rc, err := routerConfig(cfg, zap.NewNop())
	require.NoError(t, err)
	assert.Equal(t, 30*time.Second, rc.Pool.ReserveTTL)

	conf := filepath.Join(t.TempDir(), "h.yaml")
	require.NoError(t, os.WriteFile(conf, []byte("reservation-ttl: 5s\n"), 0o600))
	cfg, err = parseServe([]string{"--config", conf}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 5*time.Second, cfg.ReservationTTL)
	cfg, err = parseServe([]string{"--config", conf, "--reservation-ttl", "2m"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 2*time.Minute, cfg.ReservationTTL)

	for _, bad := range []string{"0s", "-1s"} {
		_, err := parseServe([]string{"--reservation-ttl", bad}, io.Discard)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "--reservation-ttl")
	}
}

func TestSharedIdentitiesAdapter(t *testing.T) {
	s := sharedIdentities{rotate.NewMemoryStore(nil)}
	ctx := context.Background()
	_, err := s.Get(ctx, "identity/u/site")
	assert.ErrorIs(t, err, mitm.ErrSharedNotFound, "rotate's not-found is mitm's")
	require.NoError(t, s.Set(ctx, "identity/u/site", []byte("v"), time.Minute))
	v, err := s.Get(ctx, "identity/u/site")
	require.NoError(t, err)
	assert.Equal(t, []byte("v"), v)
	assert.ErrorIs(t, s.Set(ctx, "k", make([]byte, rotate.MaxValueSize+1), time.Minute), rotate.ErrValueTooLarge)
}
