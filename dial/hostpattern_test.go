package dial

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var hostPatternCases = []struct {
	pattern string
	match   []string
	miss    []string
}{
	{"*", []string{"a.example", "localhost", "127.0.0.1", "::1", ""}, nil},
	{"*.shop.example", []string{"a.shop.example", "a.b.shop.example", "A.Shop.Example"}, []string{"shop.example", "ashop.example", "a.shop.example.net"}},
	{"shop.example", []string{"shop.example", "SHOP.example"}, []string{"a.shop.example", "shop.example.net"}},
	{"api?.example", []string{"api1.example", "apix.example"}, []string{"api.example", "api12.example"}},
	{"*.example.*", []string{"a.example.com", "x.y.example.net"}, []string{"example.com", "a.examples.com"}},
	{"**a*", []string{"a", "banana", "xa"}, []string{"bbb"}},
	{`/^(www\.)?example\.(com|net)$/`, []string{"example.com", "www.example.net", "WWW.EXAMPLE.COM"}, []string{"a.example.com", "example.org"}},
	{`/shop/`, []string{"myshop.test", "shop"}, []string{"sho.p"}},
}

func TestHostPattern(t *testing.T) {
	for _, c := range hostPatternCases {
		p, err := ParseHostPattern(c.pattern)
		require.NoError(t, err, c.pattern)
		assert.Equal(t, c.pattern, p.String())
		for _, h := range c.match {
			assert.True(t, p.Match(strings.ToLower(h)), "%s should match %q", c.pattern, h)
		}
		for _, h := range c.miss {
			assert.False(t, p.Match(strings.ToLower(h)), "%s should not match %q", c.pattern, h)
		}
	}
	for _, bad := range []string{"", "/", "/(/", "/abc", "a b", "a/b", "tab\t"} {
		_, err := ParseHostPattern(bad)
		assert.ErrorIs(t, err, ErrBadHostPattern, "%q", bad)
	}
	for pat, all := range map[string]bool{"*": true, "**": true, "*.x": false, "/.*/": false, "?": false} {
		p, err := ParseHostPattern(pat)
		require.NoError(t, err)
		assert.Equal(t, all, p.MatchesAll(), pat)
	}
}

// globRegexp is the reference semantics of a glob, for the fuzz target.
func globRegexp(glob string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?s)^`)
	for _, r := range glob {
		switch r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}

// FuzzHostPattern checks rule host patterns: compiling never panics and
// fails only with ErrBadHostPattern; a glob agrees with its regular
// expression translation; a pattern without wildcards matches exactly
// itself; "*" matches everything.
func FuzzHostPattern(f *testing.F) {
	for _, c := range hostPatternCases {
		for _, h := range append(append([]string{}, c.match...), c.miss...) {
			f.Add(c.pattern, h)
		}
	}
	f.Add("a*b?c", "axxbyc")
	f.Add("/[/", "x")
	f.Fuzz(func(t *testing.T, pattern, host string) {
		p, err := ParseHostPattern(pattern)
		if err != nil {
			if !errors.Is(err, ErrBadHostPattern) {
				t.Fatalf("%q: error %v does not wrap ErrBadHostPattern", pattern, err)
			}
			return
		}
		got := p.Match(host)
		if p.re != nil {
			return
		}
		// Compare bytes, as hosts are ASCII; skip inputs the reference
		// regexp would read as UTF-8 differently.
		if !isASCII(pattern) || !isASCII(host) {
			return
		}
		want := globRegexp(strings.ToLower(pattern)).MatchString(strings.ToLower(host))
		if got != want {
			t.Fatalf("glob %q on %q: got %v, reference %v", pattern, host, got, want)
		}
		if !strings.ContainsAny(pattern, "*?") && got != strings.EqualFold(pattern, host) {
			t.Fatalf("literal %q on %q: got %v", pattern, host, got)
		}
		if p.MatchesAll() && !got {
			t.Fatalf("catch-all %q missed %q", pattern, host)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
