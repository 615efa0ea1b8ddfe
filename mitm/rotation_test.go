package mitm

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

// cookieOrigin sets cookie "who" to the caller's address on a first visit
// and reports "ip=ADDR cookie=VALUE"; /429 and /403 answer so.
func cookieOrigin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, _, _ := net.SplitHostPort(r.RemoteAddr)
		switch r.URL.Path {
		case "/429":
			w.Header().Set("Retry-After", "30")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		case "/403":
			http.Error(w, "go away", http.StatusForbidden)
			return
		}
		var seen []string
		for _, c := range r.Cookies() {
			seen = append(seen, c.Name+"="+c.Value)
		}
		if _, err := r.Cookie("who"); err != nil {
			http.SetCookie(w, &http.Cookie{Name: "who", Value: ip, Path: "/"})
		}
		fmt.Fprintf(w, "ip=%s cookie=%s", ip, strings.Join(seen, ","))
	})
}

type visit struct{ ip, cookie string }

func parseVisit(t testing.TB, body string) visit {
	t.Helper()
	var v visit
	for _, f := range strings.Fields(body) {
		k, val, _ := strings.Cut(f, "=")
		switch k {
		case "ip":
			v.ip = val
		case "cookie":
			v.cookie = strings.TrimPrefix(f, "cookie=")
		}
	}
	require.NotEmpty(t, v.ip, body)
	return v
}

// visits makes n requests to url on one client connection and reports
// whether every request after the first reused it.
func visits(t testing.TB, c *http.Client, url string, n int, hdr ...string) ([]visit, bool) {
	t.Helper()
	var out []visit
	reused := true
	for i := range n {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		require.NoError(t, err)
		for j := 0; j+1 < len(hdr); j += 2 {
			req.Header.Set(hdr[j], hdr[j+1])
		}
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if i > 0 && !info.Reused {
				reused = false
			}
		}}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		resp, err := c.Do(req)
		require.NoError(t, err)
		body := readAll(t, resp)
		require.Equal(t, 200, resp.StatusCode, body)
		out = append(out, parseVisit(t, body))
	}
	return out, reused
}

func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestPerRequestRotationInsideOneTunnel(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			w := newWorld(t, cookieOrigin(), worldOpts{h2: h2, locals: []string{"127.0.0.11", "127.0.0.12"}})
			vs, reused := visits(t, w.client(t, h2), "https://shop.example/", 6)
			assert.True(t, reused, "all requests went through one client tunnel")
			for i, v := range vs {
				want := []string{"127.0.0.11", "127.0.0.12"}[i%2]
				assert.Equal(t, want, v.ip, "request %d left through the next upstream", i)
			}
			reqs := w.dialer.Requests()
			require.Len(t, reqs, 6, "one dial per request")
			for i, r := range reqs {
				assert.Equal(t, reqs[0].ConnID, r.ConnID, "one tunnel")
				assert.Equal(t, i, r.Seq)
			}
		})
	}
}

func TestCookiesStayWithTheirUpstream(t *testing.T) {
	w := newWorld(t, cookieOrigin(), worldOpts{locals: []string{"127.0.0.11", "127.0.0.12"}})
	vs, _ := visits(t, w.client(t, false), "https://shop.example/", 6, "Cookie", "who=client")
	for i, v := range vs {
		assert.NotContains(t, v.cookie, "client", "the client's own cookie is not sent")
		if i < 2 {
			assert.Empty(t, v.cookie, "request %d: first visit through %s", i, v.ip)
			continue
		}
		assert.Equal(t, "who="+v.ip, v.cookie, "request %d through %s carries only that upstream's cookie", i, v.ip)
	}
	a := w.ic.Identity("direct@127.0.0.11", "shop.example")
	b := w.ic.Identity("direct@127.0.0.12", "www.shop.example")
	require.NotNil(t, a)
	require.NotNil(t, b)
	assert.NotEqual(t, a.Serial(), b.Serial())
	assert.Equal(t, "shop.example", b.Site, "one site for its subdomains")
}

func TestPassClientCookies(t *testing.T) {
	w := newWorld(t, cookieOrigin(), worldOpts{cfg: func(c *Config) { c.PassClientCookies = true }})
	vs, _ := visits(t, w.client(t, false), "https://shop.example/", 2, "Cookie", "mine=1")
	assert.Equal(t, "mine=1", vs[0].cookie)
	assert.Equal(t, "who=127.0.0.1,mine=1", vs[1].cookie, "the identity's cookies first, then the client's")
}

func TestRequestsPerDial(t *testing.T) {
	for _, tc := range []struct {
		per       int
		wantDials int
		wantSeqs  []int
	}{
		{per: -1, wantDials: 1, wantSeqs: []int{0}},
		{per: 2, wantDials: 3, wantSeqs: []int{0, 2, 4}},
	} {
		t.Run(fmt.Sprintf("per=%d", tc.per), func(t *testing.T) {
			w := newWorld(t, cookieOrigin(), worldOpts{h2: true, locals: []string{"127.0.0.11", "127.0.0.12"},
				cfg: func(c *Config) { c.RequestsPerDial = tc.per }})
			vs, _ := visits(t, w.client(t, false), "https://shop.example/", 6)
			reqs := w.dialer.Requests()
			require.Len(t, reqs, tc.wantDials)
			for i, r := range reqs {
				assert.Equal(t, tc.wantSeqs[i], r.Seq)
			}
			assert.Len(t, w.origin.Hellos(), tc.wantDials, "requests sharing a dial share its origin connection")
			per := tc.per
			if per < 0 {
				per = len(vs)
			}
			for i, v := range vs {
				assert.Equal(t, vs[i/per*per].ip, v.ip, "request %d stays with its dial's upstream", i)
			}
		})
	}
}

func TestRotateAfterRequests(t *testing.T) {
	w := newWorld(t, cookieOrigin(), worldOpts{cfg: func(c *Config) {
		c.RotateAfterRequests = 2
		c.RequestsPerDial = -1
	}})
	vs, _ := visits(t, w.client(t, false), "https://shop.example/", 5)
	cookies := []string{vs[0].cookie, vs[1].cookie, vs[2].cookie, vs[3].cookie, vs[4].cookie}
	assert.Equal(t, []string{"", "who=127.0.0.1", "", "who=127.0.0.1", ""}, cookies,
		"every third request starts a new identity with an empty jar")
	assert.Len(t, w.origin.Hellos(), 3, "a new identity gets a new origin connection")
	assert.EqualValues(t, 3, w.ic.Identity("direct@127.0.0.1", "shop.example").Serial())
}

// fakeClock lets a test move the identity store's time.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestTooManyRequestsCoolsThePairAndRotates(t *testing.T) {
	for _, rotate := range []bool{false, true} {
		t.Run(fmt.Sprintf("rotate-on-429=%v", rotate), func(t *testing.T) {
			w := newWorld(t, cookieOrigin(), worldOpts{cfg: func(c *Config) { c.RotateOn429 = rotate }})
			clock := &fakeClock{t: time.Now()}
			w.ic.store.now = clock.now
			c := w.client(t, false)

			vs, _ := visits(t, c, "https://shop.example/", 1)
			require.Empty(t, vs[0].cookie)
			first := w.ic.Identity("direct@127.0.0.1", "shop.example")

			resp, body := get(t, c, "https://shop.example/429")
			assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the origin's answer reaches the client unchanged")
			assert.Equal(t, "30", resp.Header.Get("Retry-After"))
			assert.Contains(t, body, "slow down")

			resp, body = get(t, c, "https://shop.example/")
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
			assert.Equal(t, "no-upstream", resp.Header.Get("Hopper-Error"))
			assert.Equal(t, "30", resp.Header.Get("Retry-After"))
			assert.Contains(t, body, "cooling down for shop.example")

			clock.add(31 * time.Second)
			vs, _ = visits(t, c, "https://shop.example/", 1)
			now := w.ic.Identity("direct@127.0.0.1", "shop.example")
			if rotate {
				assert.Empty(t, vs[0].cookie, "a new identity has an empty jar")
				assert.NotEqual(t, first.Serial(), now.Serial())
				assert.True(t, first.Retired())
			} else {
				assert.Equal(t, "who=127.0.0.1", vs[0].cookie)
				assert.Equal(t, first.Serial(), now.Serial())
			}
		})
	}
}

func TestCoolingPairIsAvoidedWhenAnotherUpstreamIsFree(t *testing.T) {
	w := newWorld(t, cookieOrigin(), worldOpts{locals: []string{"127.0.0.11", "127.0.0.12"}})
	c := w.client(t, false)
	resp, _ := get(t, c, "https://shop.example/429") // through .11
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	vs, _ := visits(t, c, "https://shop.example/", 4)
	for _, v := range vs {
		assert.Equal(t, "127.0.0.12", v.ip, "the pool's pick of the cooling upstream is dialed again")
	}
}

func TestRepeatedForbiddenRotatesAndReportsBan(t *testing.T) {
	type ban struct{ upstream, site string }
	var mu sync.Mutex
	var bans []ban
	w := newWorld(t, cookieOrigin(), worldOpts{cfg: func(c *Config) {
		c.ForbiddenUntilRotate = 2
		c.OnBan = func(upstream, site string, err error) {
			mu.Lock()
			defer mu.Unlock()
			assert.ErrorIs(t, err, ErrBanned)
			bans = append(bans, ban{upstream, site})
		}
	}})
	c := w.client(t, false)
	visits(t, c, "https://shop.example/", 1)
	first := w.ic.Identity("direct@127.0.0.1", "shop.example")

	resp, _ := get(t, c, "https://shop.example/403")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	visits(t, c, "https://shop.example/", 1) // a success clears the count
	resp, _ = get(t, c, "https://shop.example/403")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	mu.Lock()
	assert.Empty(t, bans, "403s with a success between are not in a row")
	mu.Unlock()
	assert.False(t, first.Retired())

	resp, _ = get(t, c, "https://shop.example/403")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	mu.Lock()
	assert.Equal(t, []ban{{"direct@127.0.0.1", "shop.example"}}, bans)
	mu.Unlock()
	assert.True(t, first.Retired())
	vs, _ := visits(t, c, "https://shop.example/", 1)
	assert.Empty(t, vs[0].cookie, "the new identity starts with an empty jar")
}

func TestResetUpstreamRotatesItsIdentities(t *testing.T) {
	w := newWorld(t, cookieOrigin(), worldOpts{locals: []string{"127.0.0.11", "127.0.0.12"}})
	c := w.client(t, false)
	visits(t, c, "https://shop.example/", 2)
	a := w.ic.Identity("direct@127.0.0.11", "shop.example")
	b := w.ic.Identity("direct@127.0.0.12", "shop.example")
	assert.Equal(t, 1, w.ic.ResetUpstream("direct@127.0.0.11"))
	assert.True(t, a.Retired())
	assert.False(t, b.Retired())
	vs, _ := visits(t, c, "https://shop.example/", 2)
	for _, v := range vs {
		if v.ip == "127.0.0.11" {
			assert.Empty(t, v.cookie)
		} else {
			assert.Equal(t, "who=127.0.0.12", v.cookie)
		}
	}
}

func TestRandomProfilePerIdentity(t *testing.T) {
	locals := []string{"127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24", "127.0.0.25", "127.0.0.26"}
	w := newWorld(t, echo(), worldOpts{locals: locals, cfg: func(c *Config) { c.Profile = ProfileRandom }})
	c := w.client(t, true)
	for range locals {
		resp, body := get(t, c, "https://shop.example/")
		require.Equal(t, 200, resp.StatusCode, body)
	}
	uas := map[string]bool{}
	for i, r := range w.origin.Requests() {
		id := w.ic.Identity("direct@"+locals[i], "shop.example")
		require.NotNil(t, id)
		assert.Equal(t, id.Profile.Header("User-Agent"), r.Header.Get("User-Agent"), "each upstream speaks as its identity's profile")
		uas[r.Header.Get("User-Agent")] = true
	}
	assert.NotEmpty(t, uas)
}

func TestConfigRejectsUnknownProfile(t *testing.T) {
	base := Config{CA: testCA(t), Dialer: newTestDialer("127.0.0.1:1")}
	for _, mutate := range []func(*Config){
		func(c *Config) { c.Profile = "netscape" },
		func(c *Config) { c.ProfileRules = []ProfileRule{{Host: "*", Profile: "lynx"}} },
	} {
		cfg := base
		mutate(&cfg)
		_, err := New(cfg)
		require.ErrorIs(t, err, ErrInvalidConfig)
		require.ErrorIs(t, err, ErrUnknownProfile)
	}
	for _, mutate := range []func(*Config){
		func(c *Config) { c.CA = nil },
		func(c *Config) { c.Dialer = nil },
		func(c *Config) { c.Hosts = []string{"/(/"} },
		func(c *Config) { c.Skip = []string{"a b"} },
		func(c *Config) { c.IdleTimeout = -1 },
		func(c *Config) { c.MaxIdentities = -1 },
	} {
		cfg := base
		mutate(&cfg)
		require.ErrorIs(t, cfg.Validate(), ErrInvalidConfig)
	}
	cfg := base
	cfg.Profile, cfg.ProfileRules = "safari", []ProfileRule{{Host: "*.shop.example", Profile: "random"}}
	require.NoError(t, cfg.Validate())
}

func TestProfileRules(t *testing.T) {
	pc, err := newProfileChooser("chrome", []ProfileRule{
		{Host: "*.apple.example", Profile: "safari"},
		{Host: "/^rand/", Profile: "random"},
	})
	require.NoError(t, err)
	assert.Equal(t, "chrome", pc.choose("shop.example", nil).Name)
	assert.Equal(t, "safari", pc.choose("www.apple.example", nil).Name)
	for range 50 {
		prev := pc.choose("random.example", nil)
		next := pc.choose("random.example", prev)
		assert.NotSame(t, prev, next, "a random rotation changes the profile")
	}
	assert.Equal(t, []string{"chrome", "edge", "firefox", "safari", "ios", "chrome133", "edge133", "firefox120"}, ProfileNames())
	for range 50 {
		assert.False(t, pc.choose("random.example", nil).Superseded, "random picks current browsers only")
	}
	old, err := newProfileChooser("firefox120", nil)
	require.NoError(t, err)
	assert.Equal(t, "Firefox 120 on Windows", old.choose("shop.example", nil).Browser, "a superseded profile by name")
}

func TestRequestsCarryTheClientsControls(t *testing.T) {
	w := newWorld(t, echo(), worldOpts{})
	req := dial.Request{Target: "shop.example:443", Protocol: dial.ProtocolSOCKS5, User: "acct", Session: "s1", Country: "de"}
	s := w.ic.newSession(&req, "shop.example", "shop.example")
	defer s.close()
	e, err := s.dial(context.Background(), 7, 7, false, &reqInfo{})
	require.NoError(t, err)
	s.release(e, false)
	reqs := w.dialer.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "acct", reqs[0].User)
	assert.Equal(t, "s1", reqs[0].Session)
	assert.Equal(t, "de", reqs[0].Country)
	assert.Equal(t, 7, reqs[0].Seq)
	assert.EqualValues(t, connIDBase+1, reqs[0].ConnID, "a front end without ids gets one of mitm's")
}
