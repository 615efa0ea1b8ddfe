package mitm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memShared is a SharedStore in memory that behaves as a shared store does:
// values expire, and every call fails while it is down.
type memShared struct {
	mu   sync.Mutex
	m    map[string]memValue
	down bool
	sets int
}

type memValue struct {
	v     []byte
	until time.Time
}

var errSharedDown = errors.New("shared store unreachable")

func newMemShared() *memShared { return &memShared{m: make(map[string]memValue)} }

func (s *memShared) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, errSharedDown
	}
	v, ok := s.m[key]
	if !ok || !time.Now().Before(v.until) {
		return nil, fmt.Errorf("%w: %s", ErrSharedNotFound, key)
	}
	return append([]byte(nil), v.v...), nil
}

func (s *memShared) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errSharedDown
	}
	if ttl <= 0 || len(value) > 1<<20 {
		return errors.New("bad write")
	}
	s.m[key] = memValue{v: append([]byte(nil), value...), until: time.Now().Add(ttl)}
	s.sets++
	return nil
}

func (s *memShared) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *memShared) blob(t testing.TB, key string) *identityBlob {
	t.Helper()
	raw, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	b, err := decodeBlob(raw)
	require.NoError(t, err)
	return b
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func jarAt(max int, c *fakeClock) *jar {
	j := newJar(max)
	j.now = c.now
	return j
}

func cookieLine(cs []*http.Cookie) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name+"="+c.Value)
	}
	return strings.Join(out, "; ")
}

func TestJarExportImportRoundTrip(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	a := jarAt(10, clock)
	page := mustURL(t, "https://www.shop.example/dir/page")
	a.SetCookies(page, []*http.Cookie{
		{Name: "host", Value: "1"}, // host-only, default path /dir
		{Name: "dom", Value: "2", Domain: ".shop.example", Path: "/"},
		{Name: "short", Value: "3", Path: "/", MaxAge: 60},
		{Name: "sess", Value: "4", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode},
		{Name: "gone", Value: "5", Path: "/", Expires: clock.now().Add(-time.Hour)},
		{Name: "evil", Value: "6", Domain: "other.example", Path: "/"}, // refused, as by cookiejar
	})
	recs := a.export()
	require.Len(t, recs, 5, "four cookies and one deletion")
	for i := 1; i < len(recs); i++ {
		assert.Less(t, recs[i-1].Set, recs[i].Set, "oldest first, stamps unique")
	}
	byName := map[string]cookieRecord{}
	for _, r := range recs {
		byName[r.Name] = r
	}
	assert.Equal(t, cookieRecord{Host: "www.shop.example", Name: "host", Value: "1", Path: "/dir", Set: byName["host"].Set}, byName["host"])
	assert.Equal(t, "shop.example", byName["dom"].Domain)
	assert.Equal(t, clock.now().Add(time.Minute).Unix(), byName["short"].Expires)
	assert.Equal(t, "strict", byName["sess"].SameSite)
	assert.True(t, byName["gone"].Deleted)
	assert.Empty(t, byName["gone"].Value)

	// Through the JSON a shared store keeps.
	data, err := encodeBlob(&identityBlob{V: blobVersion, Gen: "g1", Profile: "chrome", Cookies: recs})
	require.NoError(t, err)
	blob, err := decodeBlob(data)
	require.NoError(t, err)

	b := jarAt(10, clock)
	assert.False(t, b.merge(blob.Cookies), "a fresh jar knows nothing newer")
	for _, u := range []string{"https://www.shop.example/dir/x", "https://www.shop.example/", "https://api.shop.example/dir/x", "http://www.shop.example/dir/x"} {
		assert.Equal(t, cookieLine(a.Cookies(mustURL(t, u))), cookieLine(b.Cookies(mustURL(t, u))), u)
	}
	assert.Equal(t, "dom=2", cookieLine(b.Cookies(mustURL(t, "https://api.shop.example/dir/x"))), "host-only stays on its host")
	assert.NotContains(t, cookieLine(b.Cookies(mustURL(t, "http://www.shop.example/"))), "sess", "secure stays secure")
	assert.Equal(t, recs, b.export())

	// Expiry is absolute: a minute later the short cookie is exported as
	// deleted, and not imported. (cookiejar itself keeps the system time.)
	clock.add(61 * time.Second)
	for _, r := range b.export() {
		if r.Name == "short" {
			assert.True(t, r.Deleted)
		}
	}
	c := jarAt(10, clock)
	c.merge(blob.Cookies)
	assert.NotContains(t, cookieLine(c.Cookies(mustURL(t, "https://www.shop.example/"))), "short", "an expired record is not imported")
	assert.Equal(t, 3, c.len())

	// The bound holds on import: the cookies set last are kept.
	d := jarAt(2, clock)
	d.merge(blob.Cookies)
	assert.Equal(t, 2, d.len())
	assert.Equal(t, "dom=2; sess=4", sortedLine(d.Cookies(mustURL(t, "https://www.shop.example/dir/x"))))
}

func TestJarMergeNewestWinsPerCookie(t *testing.T) {
	clock := newFakeClock()
	a, b := jarAt(10, clock), jarAt(10, clock)
	u := mustURL(t, "https://shop.example/")
	a.SetCookies(u, []*http.Cookie{{Name: "sid", Value: "1", Path: "/"}, {Name: "keep", Value: "a", Path: "/"}})
	assert.True(t, a.merge(b.export()), "a has what b lacks")
	assert.False(t, b.merge(a.export()))
	clock.add(time.Second)
	b.SetCookies(u, []*http.Cookie{{Name: "sid", Value: "2", Path: "/"}, {Name: "bonly", Value: "b", Path: "/"}})

	assert.False(t, a.merge(b.export()), "everything of a is in b, older or equal")
	assert.Equal(t, "bonly=b; keep=a; sid=2", sortedLine(a.Cookies(u)))
	assert.False(t, b.merge(a.export()))

	// A deletion is a change like any other and wins over the older value.
	clock.add(time.Second)
	a.SetCookies(u, []*http.Cookie{{Name: "sid", MaxAge: -1}})
	b.merge(a.export())
	assert.Equal(t, "bonly=b; keep=a", sortedLine(b.Cookies(u)))
	assert.False(t, a.merge(b.export()), "b's older sid does not come back")
	assert.Equal(t, "bonly=b; keep=a", sortedLine(a.Cookies(u)))

	// An older copy from elsewhere loses to the value here.
	old := a.export()
	clock.add(time.Second)
	a.SetCookies(u, []*http.Cookie{{Name: "keep", Value: "new", Path: "/"}})
	assert.True(t, a.merge(old))
	assert.Equal(t, "bonly=b; keep=new", sortedLine(a.Cookies(u)))

	// Stamps from far in the future are not trusted.
	future := a.export()
	for i := range future {
		future[i].Set = clock.now().Add(2 * maxClockSkew).UnixNano()
		future[i].Value = "future"
	}
	a.merge(future)
	assert.Equal(t, "bonly=b; keep=new", sortedLine(a.Cookies(u)))
}

func sortedLine(cs []*http.Cookie) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name+"="+c.Value)
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

func TestJarBytesBounded(t *testing.T) {
	j := newJar(1000)
	u := mustURL(t, "https://shop.example/")
	big := strings.Repeat("v", maxCookieBytes-10)
	for i := range 300 {
		j.SetCookies(u, []*http.Cookie{{Name: fmt.Sprintf("c%03d", i), Value: big, Path: "/"}})
	}
	assert.Less(t, j.len(), 300)
	assert.Greater(t, j.len(), 100)
	data, err := encodeBlob(&identityBlob{V: blobVersion, Gen: "g", Profile: "chrome", Cookies: j.export()})
	require.NoError(t, err)
	assert.LessOrEqual(t, len(data), maxBlobBytes)
	assert.Contains(t, cookieLine(j.Cookies(u)), "c299=", "the newest are kept")
	assert.NotContains(t, cookieLine(j.Cookies(u)), "c000=")

	j.SetCookies(u, []*http.Cookie{{Name: "huge", Value: big + strings.Repeat("x", 20), Path: "/"}})
	assert.NotContains(t, cookieLine(j.Cookies(u)), "huge=", "larger than a browser takes")
}

func validBlobJSON(t testing.TB) []byte {
	t.Helper()
	data, err := encodeBlob(&identityBlob{V: blobVersion, Gen: "ABC123", Rot: 2, Profile: "firefox", Cookies: []cookieRecord{
		{Host: "www.shop.example", Name: "a", Value: "1", Path: "/", Set: 10},
		{Host: "www.shop.example", Name: "b", Value: "<&>", Domain: "shop.example", Path: "/x", Expires: 1 << 40, Secure: true, SameSite: "lax", Set: 11},
		{Host: "shop.example", Name: "c", Path: "/", Set: 12, Deleted: true},
	}})
	require.NoError(t, err)
	return data
}

func TestIdentityBlob(t *testing.T) {
	data := validBlobJSON(t)
	assert.Contains(t, string(data), `"value":"<&>"`, "no HTML escaping")
	b, err := decodeBlob(data)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), b.Rot)
	assert.Len(t, b.Cookies, 3)

	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		require.NoError(t, json.Unmarshal(data, &m))
		f(m)
		out, err := json.Marshal(m)
		require.NoError(t, err)
		return out
	}
	cookie := func(m map[string]any, i int) map[string]any { return m["cookies"].([]any)[i].(map[string]any) }
	for name, bad := range map[string][]byte{
		"not JSON":        []byte("{"),
		"too large":       []byte(`{"v":1,"pad":"` + strings.Repeat("x", maxBlobBytes) + `"}`),
		"no version":      mutate(func(m map[string]any) { delete(m, "v") }),
		"no generation":   mutate(func(m map[string]any) { m["gen"] = "" }),
		"odd generation":  mutate(func(m map[string]any) { m["gen"] = "a b" }),
		"odd profile":     mutate(func(m map[string]any) { m["profile"] = "../x" }),
		"negative rot":    mutate(func(m map[string]any) { m["rot"] = -1 }),
		"foreign domain":  mutate(func(m map[string]any) { cookie(m, 1)["domain"] = "other.example" }),
		"public suffix":   mutate(func(m map[string]any) { cookie(m, 1)["domain"] = "example" }),
		"quote in value":  mutate(func(m map[string]any) { cookie(m, 0)["value"] = `a"b` }),
		"relative path":   mutate(func(m map[string]any) { cookie(m, 0)["path"] = "x" }),
		"upper-case host": mutate(func(m map[string]any) { cookie(m, 0)["host"] = "WWW.shop.example" }),
		"no name":         mutate(func(m map[string]any) { cookie(m, 0)["name"] = "" }),
		"odd same-site":   mutate(func(m map[string]any) { cookie(m, 0)["sameSite"] = "sometimes" }),
		"huge cookie":     mutate(func(m map[string]any) { cookie(m, 0)["value"] = strings.Repeat("v", maxCookieBytes) }),
	} {
		_, err := decodeBlob(bad)
		assert.ErrorIs(t, err, errBadBlob, name)
		assert.NotErrorIs(t, err, errBlobVersion, name)
	}
	_, err = decodeBlob(mutate(func(m map[string]any) { m["v"] = blobVersion + 1 }))
	assert.ErrorIs(t, err, errBlobVersion, "a newer hopper's record is recognised, and left alone")
}

// FuzzDecodeIdentityBlob: records come from the network. Decoding never
// panics; what decodes encodes back to the same record, imports into a jar
// within its bound, and the jar's export decodes again.
func FuzzDecodeIdentityBlob(f *testing.F) {
	f.Add(validBlobJSON(f))
	f.Add([]byte(`{"v":1,"gen":"x","profile":"chrome","cookies":[]}`))
	f.Add([]byte(`{"v":1,"gen":"x","profile":"mirror","cookies":[{"host":"::1","name":"a","path":"/","set":1}]}`))
	f.Add([]byte(`{"v":1,"gen":"x","profile":"chrome","cookies":[{"host":"127.0.0.1","name":"a","domain":"127.0.0.1","path":"/","set":1}]}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeBlob(data)
		if err != nil {
			require.ErrorIs(t, err, errBadBlob)
			return
		}
		out, err := encodeBlob(b)
		require.NoError(t, err)
		again, err := decodeBlob(out)
		require.NoError(t, err)
		require.Equal(t, b, again)

		j := newJar(5)
		j.merge(b.Cookies)
		require.LessOrEqual(t, j.len(), 5)
		exp, err := encodeBlob(&identityBlob{V: blobVersion, Gen: b.Gen, Profile: b.Profile, Cookies: j.export()})
		require.NoError(t, err)
		_, err = decodeBlob(exp)
		require.NoError(t, err)
	})
}

// sessionOrigin sets cookie sid to a new number on a visit without one and
// answers "ua=... cookie=...".
func sessionOrigin(n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("sid")
		if err != nil {
			c = &http.Cookie{Name: "sid", Value: fmt.Sprint(n.Add(1)), Path: "/"}
			http.SetCookie(w, c)
			fmt.Fprintf(w, "ua=%s cookie=", r.UserAgent())
			return
		}
		fmt.Fprintf(w, "ua=%s cookie=%s", r.UserAgent(), c.Value)
	})
}

type seen struct{ ua, cookie string }

func visitSeen(t testing.TB, c *http.Client, url string) seen {
	t.Helper()
	resp, body := get(t, c, url)
	require.Equal(t, 200, resp.StatusCode, body)
	ua, cookie, ok := strings.Cut(strings.TrimPrefix(body, "ua="), " cookie=")
	require.True(t, ok, body)
	return seen{ua, cookie}
}

// Two interceptors on one shared store show a site one identity: what one
// sets, the other sends; a rotation on one is taken up by the other.
func TestSharedIdentityAcrossInterceptors(t *testing.T) {
	kv := newMemShared()
	var n atomic.Int64
	opts := worldOpts{cfg: func(c *Config) { c.Profile, c.Shared, c.RotateAfterRequests = ProfileRandom, kv, 3 }}
	a := newWorld(t, sessionOrigin(&n), opts)
	b := newWorld(t, sessionOrigin(&n), opts)
	ca, cb := a.client(t, false), b.client(t, false)
	const up, url = "direct@127.0.0.1", "https://www.shop.example/"

	first := visitSeen(t, ca, url)
	assert.Empty(t, first.cookie)
	onB := visitSeen(t, cb, url)
	assert.Equal(t, seen{first.ua, "1"}, onB, "B sends A's cookie with A's profile")
	idA, idB := a.ic.Identity(up, "shop.example"), b.ic.Identity(up, "shop.example")
	assert.Equal(t, idA.gen, idB.gen)
	assert.Equal(t, idA.Profile.Name, idB.Profile.Name)
	assert.Equal(t, "identity/"+up+"/shop.example", sharedKey(pairKey{up, "shop.example"}))
	assert.Len(t, kv.blob(t, sharedKey(pairKey{up, "shop.example"})).Cookies, 1)

	// A's third request ends its identity's quota: the fourth rotates it.
	visitSeen(t, ca, url)
	visitSeen(t, ca, url)
	rotated := visitSeen(t, ca, url)
	assert.Empty(t, rotated.cookie, "a new identity starts with an empty jar")
	assert.NotEqual(t, first.ua, rotated.ua, "and another profile")
	assert.Equal(t, uint64(1), kv.blob(t, sharedKey(pairKey{up, "shop.example"})).Rot)

	onB = visitSeen(t, cb, url)
	assert.Equal(t, seen{rotated.ua, "2"}, onB, "B took up A's rotation")
	assert.True(t, idB.Retired())
	assert.Equal(t, a.ic.Identity(up, "shop.example").gen, b.ic.Identity(up, "shop.example").gen)
}

// Without the store both carry on with identities of their own; when it
// returns they agree on one, keeping the newest cookie.
func TestSharedIdentityStoreDown(t *testing.T) {
	kv := newMemShared()
	var n atomic.Int64
	opts := worldOpts{cfg: func(c *Config) { c.Shared = kv }}
	a := newWorld(t, sessionOrigin(&n), opts)
	b := newWorld(t, sessionOrigin(&n), opts)
	ca, cb := a.client(t, false), b.client(t, false)
	const up, url = "direct@127.0.0.1", "https://shop.example/"

	kv.setDown(true)
	assert.Empty(t, visitSeen(t, ca, url).cookie)
	assert.Empty(t, visitSeen(t, cb, url).cookie, "B cannot know A's identity")
	assert.Equal(t, "1", visitSeen(t, ca, url).cookie, "each keeps its own")
	assert.Equal(t, "2", visitSeen(t, cb, url).cookie)
	assert.Zero(t, kv.sets)

	kv.setDown(false)
	visitSeen(t, ca, url)
	visitSeen(t, cb, url)
	assert.Equal(t, "2", visitSeen(t, ca, url).cookie, "one identity, the cookie set last")
	assert.Equal(t, "2", visitSeen(t, cb, url).cookie)
	assert.Equal(t, a.ic.Identity(up, "shop.example").gen, b.ic.Identity(up, "shop.example").gen)
}

// A record this build cannot read is replaced; one of a newer format is
// left alone.
func TestSharedIdentityUnreadableRecord(t *testing.T) {
	kv := newMemShared()
	w := newWorld(t, cookieOrigin(), worldOpts{cfg: func(c *Config) { c.Shared = kv }})
	c := w.client(t, false)
	key := sharedKey(pairKey{"direct@127.0.0.1", "shop.example"})
	ctx := context.Background()

	require.NoError(t, kv.Set(ctx, key, []byte("garbage"), time.Hour))
	visits(t, c, "https://shop.example/", 1)
	assert.Equal(t, "chrome", kv.blob(t, key).Profile, "replaced")

	newer := []byte(`{"v":99,"anything":"else"}`)
	require.NoError(t, kv.Set(ctx, key, newer, time.Hour))
	visits(t, c, "https://shop.example/", 2)
	got, err := kv.Get(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, newer, got)
}

// BenchmarkSharedSync: what Config.Shared adds to a new origin connection
// besides the store's round trip, with a jar of 50 cookies: reading the
// record unchanged (a hash), and taking up another instance's identity
// (decode, and import every cookie into a new jar: the worst case; a
// changed record of the same identity imports only what changed).
func BenchmarkSharedSync(b *testing.B) {
	kv := newMemShared()
	cfg := Config{Shared: kv}.withDefaults()
	pc, err := newProfileChooser("chrome", nil)
	require.NoError(b, err)
	s := newIdentityStore(&cfg, &pc)
	ctx := context.Background()
	id := s.acquire(ctx, "u1", "shop.example", "shop.example")
	u := mustURL(b, "https://shop.example/")
	for i := range 50 {
		id.jar.SetCookies(u, []*http.Cookie{{Name: fmt.Sprintf("c%02d", i), Value: strings.Repeat("v", 100), Path: "/"}})
	}
	require.NoError(b, s.observe(ctx, id, 200, "", true))
	key := sharedKey(pairKey{"u1", "shop.example"})
	raw, err := kv.Get(ctx, key)
	require.NoError(b, err)

	b.Run("unchanged", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.acquire(ctx, "u1", "shop.example", "shop.example")
		}
	})
	b.Run("decode+import", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			blob, err := decodeBlob(raw)
			if err != nil {
				b.Fatal(err)
			}
			newJar(DefaultMaxCookiesPerJar).merge(blob.Cookies)
		}
	})
}
