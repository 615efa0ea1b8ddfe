package mitm

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func profile(t testing.TB, name string) *Profile {
	t.Helper()
	p, err := LookupProfile(name)
	require.NoError(t, err)
	return p
}

func TestApplyProfile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		profile string
		method  string
		in      http.Header
		want    map[string]string // "" means absent
	}{
		{
			name: "scraper GET becomes a navigation", profile: "chrome", method: "GET",
			in: http.Header{"User-Agent": {"curl/8.0"}, "Accept": {"*/*"}, "X-Api-Key": {"k"}, "Proxy-Authorization": {"Basic x"}, "Hopper-Country": {"de"}},
			want: map[string]string{
				"User-Agent": profile(t, "chrome").Header("User-Agent"), "Accept": profile(t, "chrome").Header("Accept"),
				"Sec-Fetch-Mode": "navigate", "sec-ch-ua-platform": `"Windows"`, "X-Api-Key": "k",
				"Proxy-Authorization": "", "Hopper-Country": "", "Upgrade-Insecure-Requests": "1",
			},
		},
		{
			name: "a specific Accept is kept", profile: "chrome", method: "GET",
			in:   http.Header{"Accept": {"application/json"}},
			want: map[string]string{"Accept": "application/json", "Sec-Fetch-Mode": "navigate"},
		},
		{
			name: "POST gets identity headers only", profile: "firefox", method: "POST",
			in:   http.Header{"Accept": {"*/*"}, "Content-Type": {"application/json"}, "Accept-Language": {"fr"}},
			want: map[string]string{"Accept": "*/*", "Content-Type": "application/json", "Accept-Language": "en-US,en;q=0.9", "Sec-Fetch-Mode": "", "Upgrade-Insecure-Requests": "", "Priority": ""},
		},
		{
			name: "browser subresource keeps its fetch metadata", profile: "edge", method: "GET",
			in:   http.Header{"Sec-Fetch-Mode": {"no-cors"}, "Sec-Fetch-Dest": {"image"}, "Accept": {"image/avif,*/*"}},
			want: map[string]string{"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image", "Accept": "image/avif,*/*", "Upgrade-Insecure-Requests": ""},
		},
		{
			name: "fetch metadata the profile's browser never sends goes", profile: "safari", method: "GET",
			in:   http.Header{"Sec-Fetch-Mode": {"cors"}, "Sec-Fetch-Site": {"same-origin"}, "Sec-Ch-Ua-Mobile": {"?0"}},
			want: map[string]string{"Sec-Fetch-Mode": "", "Sec-Fetch-Site": "", "Sec-Ch-Ua-Mobile": "", "User-Agent": profile(t, "safari").Header("User-Agent")},
		},
		{
			name: "client hints of another browser go", profile: "firefox", method: "GET",
			in:   http.Header{"Sec-Ch-Ua": {`"Chromium";v="1"`}, "Sec-Ch-Ua-Platform": {`"Linux"`}},
			want: map[string]string{"Sec-Ch-Ua": "", "sec-ch-ua": "", "Sec-Ch-Ua-Platform": ""},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.in.Clone()
			applyProfile(h, profile(t, tc.profile), tc.method, true)
			for k, v := range tc.want {
				assert.Equal(t, v, headerFold(h, k), "%s", k)
			}
			for k := range h {
				assert.False(t, hasPrefixFold(k, "Hopper-") || hasPrefixFold(k, "Proxy-"), k)
			}
		})
	}
}

// headerFold looks a header up by any spelling.
func headerFold(h http.Header, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func TestApplyProfileKeepsBrowserSpelling(t *testing.T) {
	h := http.Header{"Sec-Ch-Ua": {"x"}}
	applyProfile(h, profile(t, "chrome"), "GET", true)
	assert.Contains(t, h, "sec-ch-ua", "stored as Chromium spells it")
	assert.NotContains(t, h, "Sec-Ch-Ua")
	n := 0
	for k := range h {
		if strings.EqualFold(k, "sec-ch-ua") {
			n++
		}
	}
	assert.Equal(t, 1, n, "one spelling only")
}

func TestEveryProfileIsComplete(t *testing.T) {
	for _, p := range Profiles() {
		for _, name := range []string{"User-Agent", "Accept", "Accept-Language", "Accept-Encoding"} {
			assert.NotEmpty(t, p.Header(name), "%s lacks %s", p.Name, name)
		}
		assert.True(t, p.HelloID.Client != "" || p.HelloSpec != nil, "%s has a ClientHello", p.Name)
		if p.chromium() {
			assert.Contains(t, p.Header("User-Agent"), "Chrome/")
		}
	}
}

func FuzzApplyProfile(f *testing.F) {
	f.Add("GET", "User-Agent", "curl/8", "Hopper-Session", "x")
	f.Add("POST", "sec-ch-ua", "a", "Proxy-Authorization", "b")
	f.Add("GET", "Sec-Fetch-Mode", "cors", "Accept", "*/*")
	ps := Profiles()
	f.Fuzz(func(t *testing.T, method, k1, v1, k2, v2 string) {
		for i := range ps {
			h := http.Header{}
			h[k1] = []string{v1}
			h[k2] = []string{v2}
			applyProfile(h, &ps[i], method, true)
			if got := h.Get("User-Agent"); got != ps[i].Header("User-Agent") {
				t.Fatalf("%s: User-Agent %q", ps[i].Name, got)
			}
			for k := range h {
				if hasPrefixFold(k, "Hopper-") || hasPrefixFold(k, "Proxy-") {
					t.Fatalf("%s: %q left", ps[i].Name, k)
				}
				if hasPrefixFold(k, "Sec-Ch-") && !ps[i].chromium() {
					t.Fatalf("%s: client hint %q left", ps[i].Name, k)
				}
			}
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		" 5 ":                           5 * time.Second,
		"0":                             0,
		"-3":                            0,
		"soon":                          0,
		"Wed, 01 Jan 2025 00:01:00 GMT": time.Minute,
		"Tue, 31 Dec 2024 23:00:00 GMT": 0,
		"99999999999999":                365 * 24 * time.Hour,
	} {
		assert.Equal(t, want, parseRetryAfter(v, now), "%q", v)
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "120", "Wed, 01 Jan 2025 00:01:00 GMT", "-1", "9999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d := parseRetryAfter(v, now)
		if d < 0 || d > 366*24*time.Hour {
			t.Fatalf("%q: %v out of range", v, d)
		}
	})
}

func TestAcceptsCoding(t *testing.T) {
	for _, tc := range []struct {
		accept, coding string
		want           bool
	}{
		{"", "gzip", false},
		{"gzip", "gzip", true},
		{"gzip", "x-gzip", true},
		{"deflate, gzip;q=1.0, *;q=0.5", "br", true},
		{"gzip;q=0", "gzip", false},
		{"*;q=0, gzip", "gzip", true},
		{"*;q=0", "br", false},
		{"br, zstd", "gzip", false},
		{"GZIP ; q=0.5", "gzip", true},
		{"identity", "gzip", false},
	} {
		assert.Equal(t, tc.want, acceptsCoding(tc.accept, tc.coding), "%q accepts %s", tc.accept, tc.coding)
	}
}

func FuzzAcceptsCoding(f *testing.F) {
	f.Add("gzip;q=0.5, br", "gzip")
	f.Add("*;q=0", "br")
	f.Fuzz(func(t *testing.T, accept, coding string) {
		_ = acceptsCoding(accept, coding)
		// Listing the coding first with q=0 refuses it, whatever follows.
		c := strings.ToLower(coding)
		if c != "" && c == strings.TrimSpace(c) && !strings.ContainsAny(c, ",;") && c != "*" && c != "x-gzip" {
			if acceptsCoding(c+";q=0, "+accept, c) {
				t.Fatalf("%q;q=0 first still accepts", c)
			}
		}
	})
}
