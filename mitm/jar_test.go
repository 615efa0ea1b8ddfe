package mitm

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

func cookieNames(cs []*http.Cookie) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestJarIsBoundedOldestFirst(t *testing.T) {
	j := newJar(3)
	u := mustURL(t, "https://shop.example/a/b")
	for i := range 5 {
		j.SetCookies(u, []*http.Cookie{{Name: fmt.Sprintf("c%d", i), Value: "v", Path: "/"}})
	}
	assert.Equal(t, 3, j.len())
	assert.ElementsMatch(t, []string{"c2", "c3", "c4"}, cookieNames(j.Cookies(u)))

	// Updating a cookie does not count twice.
	j.SetCookies(u, []*http.Cookie{{Name: "c4", Value: "w", Path: "/"}})
	assert.Equal(t, 3, j.len())
	assert.ElementsMatch(t, []string{"c2", "c3", "c4"}, cookieNames(j.Cookies(u)))
}

func TestJarEvictsHostOnlyDefaultPathAndDomainCookies(t *testing.T) {
	j := newJar(2)
	u := mustURL(t, "https://www.shop.example/dir/page")
	j.SetCookies(u, []*http.Cookie{{Name: "hostonly", Value: "1"}})                                // host-only, path /dir
	j.SetCookies(u, []*http.Cookie{{Name: "dom", Value: "1", Domain: ".shop.example", Path: "/"}}) // domain cookie
	assert.ElementsMatch(t, []string{"hostonly", "dom"}, cookieNames(j.Cookies(mustURL(t, "https://www.shop.example/dir/x"))))
	j.SetCookies(u, []*http.Cookie{{Name: "third", Value: "1", Path: "/"}})
	got := cookieNames(j.Cookies(mustURL(t, "https://www.shop.example/dir/x")))
	assert.ElementsMatch(t, []string{"dom", "third"}, got, "the host-only cookie with its default path was really removed")
	j.SetCookies(u, []*http.Cookie{{Name: "fourth", Value: "1", Path: "/"}})
	got = cookieNames(j.Cookies(mustURL(t, "https://api.shop.example/")))
	assert.NotContains(t, got, "dom", "the domain cookie was really removed")
}

func TestJarForgetsDeletedCookies(t *testing.T) {
	j := newJar(2)
	u := mustURL(t, "https://shop.example/")
	j.SetCookies(u, []*http.Cookie{{Name: "a", Value: "1"}, {Name: "b", Value: "1"}})
	j.SetCookies(u, []*http.Cookie{{Name: "a", MaxAge: -1}})
	assert.Equal(t, 1, j.len())
	j.SetCookies(u, []*http.Cookie{{Name: "c", Value: "1", Expires: time.Now().Add(time.Hour)}})
	assert.ElementsMatch(t, []string{"b", "c"}, cookieNames(j.Cookies(u)), "deleting freed a slot: nothing evicted")
}

func TestJarFollowsCookieRules(t *testing.T) {
	j := newJar(10)
	j.SetCookies(mustURL(t, "https://shop.example/"), []*http.Cookie{
		{Name: "ok", Value: "1", Path: "/"},
		{Name: "evil", Value: "1", Domain: "example", Path: "/"}, // a public suffix
	})
	assert.Equal(t, []string{"ok"}, cookieNames(j.Cookies(mustURL(t, "https://shop.example/"))))
	assert.Empty(t, j.Cookies(mustURL(t, "https://other.example/")), "no cookie crosses sites")
}

func TestIdentityStore(t *testing.T) {
	cfg := Config{MaxIdentities: 2, RotateAfterRequests: 2}.withDefaults()
	pc, err := newProfileChooser("firefox", nil)
	require.NoError(t, err)
	s := newIdentityStore(&cfg, &pc)

	a := s.acquire(context.Background(), "u1", "shop.example", "shop.example")
	assert.Equal(t, "firefox", a.Profile.Name)
	assert.Same(t, a, s.acquire(context.Background(), "u1", "shop.example", "www.shop.example"))
	assert.False(t, s.use(a), "quota of 2 reached: use refuses and rotates")
	assert.True(t, a.Retired())
	b := s.acquire(context.Background(), "u1", "shop.example", "shop.example")
	assert.NotSame(t, a, b)
	assert.True(t, s.use(b))

	// Bounded: a third pair evicts the least recently used.
	c := s.acquire(context.Background(), "u2", "shop.example", "shop.example")
	_ = s.acquire(context.Background(), "u3", "shop.example", "shop.example")
	assert.Equal(t, 2, s.pairs.len())
	assert.True(t, b.Retired(), "evicted identities are retired")
	assert.False(t, c.Retired())

	assert.Equal(t, "shop.example", siteOf("a.b.shop.example"))
	assert.Equal(t, "127.0.0.1", siteOf("127.0.0.1"))
	assert.Equal(t, "localhost", siteOf("localhost"))
	assert.Equal(t, "example.co.uk", siteOf("www.example.co.uk"))
}
