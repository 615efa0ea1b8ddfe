package rotate

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

func TestTemplateExpansion(t *testing.T) {
	const seed = 123456789
	alnum, digits := sessionAlnum(seed), sessionDigits(seed)
	require.Regexp(t, `^[a-z0-9]{12}$`, alnum)
	require.Regexp(t, `^[1-9][0-9]{8}$`, digits)
	cases := []struct {
		in, country, want string
	}{
		{"plain", "", "plain"},
		{"u-session-{session}", "", "u-session-" + alnum},
		{"u-sid-{session-digits}", "", "u-sid-" + digits},
		{"u-country-{country}-session-{session}", "us", "u-country-us-session-" + alnum},
		{"u-country-{country}-session-{session}", "", "u-session-" + alnum},
		{"u-cc-{country}", "", "u"},
		{"u-res-{country|any}-sid-{session-digits}", "", "u-res-any-sid-" + digits},
		{"u-res-{country|any}", "nl", "u-res-nl"},
		{"{country}", "", ""},
		{"{country}.gw.example", "de", "de.gw.example"},
		{"x{country}", "", "x"},
		{"{session}{session}", "", alnum + alnum},
		{"{unknown}-{session", "", "{unknown}-{session"},
		{"{country|}", "", "{country|}"},
		{"{session|x}", "", "{session|x}"},
	}
	for _, c := range cases {
		f := fill{seed: seed, country: c.country}
		assert.Equal(t, c.want, f.expand(c.in), "%q country %q", c.in, c.country)
	}
	f := fill{}
	a := f.expand("{session}")
	assert.Equal(t, a, f.expand("{session}"), "one connection, one session")
	g := fill{}
	assert.NotEqual(t, a, g.expand("{session}"), "another connection, another")
	assert.Regexp(t, `^[a-z0-9]{12}$`, NewSessionID())

	_, err := newFill(0, &dial.Request{Country: "d e"})
	assert.ErrorIs(t, err, ErrTemplateValue)
	fl, err := newFill(0, &dial.Request{Country: "DE"})
	require.NoError(t, err)
	assert.Equal(t, "de", fl.country)

	k := sessionKey{user: "u", id: "s", country: "de"}
	assert.Equal(t, stickySeed(k, 0), stickySeed(k, 0), "stable for a session")
	assert.NotEqual(t, stickySeed(k, 0), stickySeed(k, 1), "new after a move")
	assert.NotEqual(t, stickySeed(k, 0), stickySeed(sessionKey{user: "v", id: "s", country: "de"}, 0))
}

// providerLines are the README's list lines for commercial gateways.
var providerLines = []struct {
	line, country, user string
}{
	{"http://brd-customer-CUSTOMER-zone-ZONE-country-{country}-session-{session}:PASSWORD@brd.superproxy.io:33335",
		"us", "brd-customer-CUSTOMER-zone-ZONE-country-us-session-%s"},
	{"http://customer-USERNAME-cc-{country}-sessid-{session}-sesstime-10:PASSWORD@pr.oxylabs.io:7777",
		"", "customer-USERNAME-sessid-%s-sesstime-10"},
	{"http://user-USERNAME-country-{country}-session-{session}-sessionduration-10:PASSWORD@gate.smartproxy.com:7000",
		"de", "user-USERNAME-country-de-session-%s-sessionduration-10"},
	{"http://USERNAME-res-{country|any}-sid-{session-digits}:PASSWORD@gw.netnut.net:5959",
		"", "USERNAME-res-any-sid-%s"},
}

func TestProviderLines(t *testing.T) {
	const seed = 42
	for _, c := range providerLines {
		e, err := ParseEntry(c.line)
		require.NoError(t, err, c.line)
		assert.True(t, e.Templated(), c.line)
		again, err := ParseEntry(e.String())
		require.NoError(t, err)
		assert.Equal(t, e, again, "canonical form round-trips")
		assert.NotContains(t, e.Redacted(), "PASSWORD")
		f := fill{seed: seed, country: c.country}
		session := sessionAlnum(seed)
		if e.Host == "gw.netnut.net" {
			session = sessionDigits(seed)
		}
		assert.Equal(t, fmt.Sprintf(c.user, session), f.expand(e.User), c.line)
	}
	// Placeholders are accepted in hosts too, and only known ones.
	e, err := ParseEntry("http://{country}.gw.example:8000")
	require.NoError(t, err)
	assert.True(t, e.Templated())
	_, err = ParseEntry("http://{nope}.gw.example:8000")
	assert.ErrorIs(t, err, ErrInvalidEntry)
}

// FuzzTemplateExpand checks that expansion never panics, is the same for the
// same connection (seed), and leaves text without placeholders alone. (It may
// leave a placeholder behind when the input spells one around another, as in
// "{{country}session}", which is harmless: it is sent as text.)
func FuzzTemplateExpand(f *testing.F) {
	for _, c := range providerLines {
		f.Add(c.line, c.country, uint64(7))
	}
	f.Add("a-{country|x}-{country}-{session-digits}{", "", uint64(0))
	f.Fuzz(func(t *testing.T, s, country string, seed uint64) {
		if !validTemplateValue(country) {
			return
		}
		fl := fill{seed: seed, country: country}
		out := fl.expand(s)
		if again := (&fill{seed: fl.seed, country: country}).expand(s); again != out {
			t.Fatalf("%q: expansion not stable: %q then %q", s, out, again)
		}
		if !hasPlaceholder(s) && out != s {
			t.Fatalf("%q: changed without placeholders: %q", s, out)
		}
	})
}
