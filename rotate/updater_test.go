package rotate

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// listServer serves a list whose body and status the test changes.
type listServer struct {
	mu     sync.Mutex
	body   string
	status int
	*httptest.Server
}

func startListServer(t *testing.T, body string) *listServer {
	ls := &listServer{body: body, status: http.StatusOK}
	ls.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.mu.Lock()
		body, status := ls.body, ls.status
		ls.mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(ls.Close)
	return ls
}

func (ls *listServer) set(status int, body string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.status, ls.body = status, body
}

func labels(ups []*Upstream) []string {
	out := make([]string, len(ups))
	for i, u := range ups {
		out[i] = u.Label()
	}
	return out
}

func TestUpdaterURLFailureKeepsPool(t *testing.T) {
	ls := startListServer(t, "a.example:1\nb.example:2\n")
	p := newTestPool(t, Config{})
	u, err := NewUpdater(p, UpdaterConfig{Sources: []string{ls.URL + "/list.txt?token=s3cret"}})
	require.NoError(t, err)
	ctx := context.Background()

	require.NoError(t, u.Reload(ctx))
	before := p.Upstreams()
	assert.Equal(t, []string{"http://a.example:1", "http://b.example:2"}, labels(before))

	ls.set(http.StatusInternalServerError, "oops")
	err = u.Reload(ctx)
	assert.True(t, errors.Is(err, ErrFetch), "%v", err)
	assert.NotContains(t, err.Error(), "s3cret", "list URL secrets stay out of errors")
	assert.Equal(t, before, p.Upstreams(), "a failed fetch keeps the pool")

	ls.set(http.StatusOK, "# nothing here\n\nbad line\n")
	err = u.Reload(ctx)
	assert.True(t, errors.Is(err, ErrEmptyList), "%v", err)
	assert.Equal(t, before, p.Upstreams(), "an empty list keeps the pool")

	// With nothing loaded before, an empty list leaves the pool empty.
	fresh := newTestPool(t, Config{})
	u2, err := NewUpdater(fresh, UpdaterConfig{Sources: []string{ls.URL}})
	require.NoError(t, err)
	err = u2.Reload(ctx)
	assert.True(t, errors.Is(err, ErrNoEntries), "%v", err)
	assert.Zero(t, fresh.Len())

	ls.Close() // unreachable
	err = u.Reload(ctx)
	assert.Error(t, err)
	assert.Equal(t, before, p.Upstreams())
}

func TestUpdaterFileBadLinesAndDedupe(t *testing.T) {
	dir := t.TempDir()
	f1 := filepath.Join(dir, "one.txt")
	f2 := filepath.Join(dir, "two.txt")
	require.NoError(t, os.WriteFile(f1, []byte("a.example:1\nnot a proxy\nhttp://b.example:2\n"), 0o600))
	require.NoError(t, os.WriteFile(f2, []byte("# dup of b\nb.example:2\nsocks5://c.example:3\n"), 0o600))
	core, logs := observer.New(zapcore.InfoLevel)
	p := newTestPool(t, Config{})
	u, err := NewUpdater(p, UpdaterConfig{Sources: []string{f1, f2}, Logger: zap.New(core)})
	require.NoError(t, err)

	require.NoError(t, u.Reload(context.Background()), "bad lines are logged and skipped, not a failure")
	assert.Equal(t, []string{"http://a.example:1", "http://b.example:2", "socks5://c.example:3"}, labels(p.Upstreams()))
	bad := logs.FilterMessage("bad upstream line skipped").All()
	require.Len(t, bad, 1)
	errText := bad[0].ContextMap()["error"]
	assert.Equal(t, f1+":2: invalid upstream entry: white space or control character at offset 3", errText)

	// One source disappears: its previous entries stay, the other reloads.
	require.NoError(t, os.Remove(f1))
	require.NoError(t, os.WriteFile(f2, []byte("socks5://d.example:4\n"), 0o600))
	err = u.Reload(context.Background())
	assert.True(t, errors.Is(err, os.ErrNotExist), "%v", err)
	assert.Equal(t, []string{"http://a.example:1", "http://b.example:2", "socks5://d.example:4"}, labels(p.Upstreams()))
}

func TestUpdaterRunRefreshes(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "list.txt")
	require.NoError(t, os.WriteFile(f, []byte("a.example:1\n"), 0o600))
	p := newTestPool(t, Config{})
	u, err := NewUpdater(p, UpdaterConfig{Sources: []string{f}, Interval: 10 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- u.Run(ctx) }()

	require.Eventually(t, func() bool { return p.Len() == 1 }, 10*time.Second, 5*time.Millisecond, "loaded at start")
	require.NoError(t, os.WriteFile(f, []byte("a.example:1\nb.example:2\n"), 0o600))
	require.Eventually(t, func() bool { return p.Len() == 2 }, 10*time.Second, 5*time.Millisecond, "refreshed")
	cancel()
	assert.NoError(t, <-errc)
}

func TestUpdaterLimitsAndValidate(t *testing.T) {
	ls := startListServer(t, strings.Repeat("a.example:1\n", 100))
	p := newTestPool(t, Config{})
	u, err := NewUpdater(p, UpdaterConfig{Sources: []string{ls.URL}, MaxListSize: 64})
	require.NoError(t, err)
	err = u.Reload(context.Background())
	assert.True(t, errors.Is(err, ErrListTooLarge), "%v", err)
	assert.Zero(t, p.Len(), "a cut-off list is not used")

	for _, cfg := range []UpdaterConfig{{}, {Sources: []string{""}}, {Sources: []string{"x"}, Interval: -1}} {
		_, err := NewUpdater(p, cfg)
		assert.True(t, errors.Is(err, ErrBadConfig), "%+v", cfg)
	}
	assert.Equal(t, "https://example.net/l.txt?…", SourceLabel("https://user:pw@example.net/l.txt?key=1"))
	assert.Equal(t, "lists/a.txt", SourceLabel("lists/a.txt"))
}
