package auth

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hopper-proxy/hopper/dial"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var client = &net.TCPAddr{IP: net.ParseIP("198.51.100.7"), Port: 40000}

// htpasswdFile writes a users file with the real htpasswd -B tool.
func htpasswdFile(t *testing.T, pairs ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users")
	for i := 0; i+1 < len(pairs); i += 2 {
		args := []string{"-b", "-B", "-C", "5", p, pairs[i], pairs[i+1]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		out, err := exec.Command("htpasswd", args...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	return p
}

func TestStaticAndHtpasswd(t *testing.T) {
	users := htpasswdFile(t, "bob", "hunter2", "carol", "s3cret")
	s, err := New(Config{Static: []string{"alice:wonder:land"}, UsersFile: users})
	require.NoError(t, err)
	ctx := context.Background()

	for _, c := range []struct{ user, pass string }{{"alice", "wonder:land"}, {"bob", "hunter2"}, {"carol", "s3cret"}, {"bob", "hunter2"}} {
		acct, err := s.Authenticate(ctx, client, c.user, c.pass)
		require.NoError(t, err, c.user)
		assert.Equal(t, c.user, acct)
	}
	for _, c := range []struct{ user, pass string }{{"alice", "wonder"}, {"bob", "hunter3"}, {"mallory", "x"}, {"", ""}} {
		_, err := s.Authenticate(ctx, client, c.user, c.pass)
		assert.ErrorIs(t, err, dial.ErrAuth, c.user)
		assert.ErrorIs(t, err, ErrBadCredentials, c.user)
	}
}

func TestReloadKeepsLastGood(t *testing.T) {
	users := htpasswdFile(t, "bob", "one")
	s, err := New(Config{UsersFile: users})
	require.NoError(t, err)
	_, err = s.Authenticate(context.Background(), client, "bob", "one")
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(users, []byte("# accounts\nbob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"), 0o600))
	err = s.Reload()
	require.ErrorIs(t, err, ErrUsersFile)
	assert.Contains(t, err.Error(), "users:2")
	assert.Contains(t, err.Error(), "htpasswd -B")
	_, err = s.Authenticate(context.Background(), client, "bob", "one")
	assert.NoError(t, err, "previous accounts stay in force")

	fresh := htpasswdFile(t, "bob", "two")
	data, err := os.ReadFile(fresh)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(users, data, 0o600))
	require.NoError(t, s.Reload())
	_, err = s.Authenticate(context.Background(), client, "bob", "one")
	assert.ErrorIs(t, err, ErrBadCredentials, "the verification cache is dropped on reload")
	_, err = s.Authenticate(context.Background(), client, "bob", "two")
	assert.NoError(t, err)
}

func TestBadStaticEntry(t *testing.T) {
	_, err := New(Config{Static: []string{"nopassword"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--auth")
}

func TestRateLimitPerClient(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	core, logs := observer.New(zapcore.InfoLevel)
	s, err := New(Config{Static: []string{"alice:pw"}, MaxFailures: 3, FailureWindow: time.Minute, Lockout: 30 * time.Second, Now: clock, Logger: zap.New(core)})
	require.NoError(t, err)
	ctx := context.Background()
	other := &net.TCPAddr{IP: net.ParseIP("198.51.100.8"), Port: 1}

	for i := 0; i < 3; i++ {
		_, err := s.Authenticate(ctx, client, "alice", "guess-hunter")
		assert.ErrorIs(t, err, ErrBadCredentials)
	}
	_, err = s.Authenticate(ctx, client, "alice", "pw")
	assert.ErrorIs(t, err, ErrRateLimited, "locked out even with the right password")
	_, err = s.Authenticate(ctx, other, "alice", "pw")
	assert.NoError(t, err, "another address is unaffected")

	mu.Lock()
	now = now.Add(31 * time.Second)
	mu.Unlock()
	_, err = s.Authenticate(ctx, client, "alice", "pw")
	assert.NoError(t, err, "lockout expires")

	require.Equal(t, 1, logs.FilterMessage("client locked out after failed proxy logins").Len())
	for _, e := range logs.All() {
		for _, f := range e.Context {
			assert.NotContains(t, f.String, "guess-hunter", "passwords never logged")
		}
	}
}

func TestLimiterBounded(t *testing.T) {
	l := limiter{max: 100, window: time.Second, lockout: time.Second, entries: map[string]*failures{}}
	now := time.Unix(0, 0)
	for i := 0; i < maxEntries+10; i++ {
		l.fail(strings.Repeat("x", i%7)+string(rune(i)), now.Add(time.Duration(i)*time.Millisecond))
	}
	assert.LessOrEqual(t, len(l.entries), maxEntries)
}
