package rotate

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var validEntries = []struct {
	in        string
	want      Entry
	canonical string
	label     string
}{
	{"http://user:pass@proxy.example:8080", Entry{Scheme: SchemeHTTP, Host: "proxy.example", Port: 8080, User: "user", Pass: "pass"},
		"http://user:pass@proxy.example:8080", "http://user:***@proxy.example:8080"},
	{"HTTPS://Proxy.Example:8443/", Entry{Scheme: SchemeHTTPS, Host: "proxy.example", Port: 8443},
		"https://proxy.example:8443", "https://proxy.example:8443"},
	{"https://proxy.example", Entry{Scheme: SchemeHTTPS, Host: "proxy.example", Port: 443},
		"https://proxy.example:443", "https://proxy.example:443"},
	{"socks5://10.0.0.1:1080", Entry{Scheme: SchemeSOCKS5, Host: "10.0.0.1", Port: 1080},
		"socks5://10.0.0.1:1080", "socks5://10.0.0.1:1080"},
	{"socks5h://u%40x:p%3Aw%2F@[2001:DB8::1]:1081", Entry{Scheme: SchemeSOCKS5H, Host: "2001:db8::1", Port: 1081, User: "u@x", Pass: "p:w/"},
		"socks5h://u%40x:p%3Aw%2F@[2001:db8::1]:1081", "socks5h://u%40x:***@[2001:db8::1]:1081"},
	{"socks5://gw.example", Entry{Scheme: SchemeSOCKS5, Host: "gw.example", Port: 1080},
		"socks5://gw.example:1080", "socks5://gw.example:1080"},
	{"1.2.3.4:3128", Entry{Scheme: SchemeHTTP, Host: "1.2.3.4", Port: 3128},
		"http://1.2.3.4:3128", "http://1.2.3.4:3128"},
	{"1.2.3.4:3128:alice:s3:cr#t", Entry{Scheme: SchemeHTTP, Host: "1.2.3.4", Port: 3128, User: "alice", Pass: "s3:cr#t"},
		"http://alice:s3%3Acr%23t@1.2.3.4:3128", "http://alice:***@1.2.3.4:3128"},
	{"[::1]:8080:bob:pw", Entry{Scheme: SchemeHTTP, Host: "::1", Port: 8080, User: "bob", Pass: "pw"},
		"http://bob:pw@[::1]:8080", "http://bob:***@[::1]:8080"},
	{"alice:p@ss@proxy.example:3128", Entry{Scheme: SchemeHTTP, Host: "proxy.example", Port: 3128, User: "alice", Pass: "p@ss"},
		"http://alice:p%40ss@proxy.example:3128", "http://alice:***@proxy.example:3128"},
	{"1.2.3.4:3128:alice:p@ss", Entry{Scheme: SchemeHTTP, Host: "1.2.3.4", Port: 3128, User: "alice", Pass: "p@ss"},
		"http://alice:p%40ss@1.2.3.4:3128", "http://alice:***@1.2.3.4:3128"},
	{"http://user@proxy.example:80", Entry{Scheme: SchemeHTTP, Host: "proxy.example", Port: 80, User: "user"},
		"http://user@proxy.example:80", "http://user@proxy.example:80"},
	{"http://user-session-{session}-country-{country}:pass@gw.example:22225",
		Entry{Scheme: SchemeHTTP, Host: "gw.example", Port: 22225, User: "user-session-{session}-country-{country}", Pass: "pass"},
		"http://user-session-{session}-country-{country}:pass@gw.example:22225",
		"http://user-session-{session}-country-{country}:***@gw.example:22225"},
	{"http://{country}.gw.example:7777", Entry{Scheme: SchemeHTTP, Host: "{country}.gw.example", Port: 7777},
		"http://{country}.gw.example:7777", "http://{country}.gw.example:7777"},
	{"direct", Entry{Scheme: SchemeDirect}, "direct", "direct"},
	{"DIRECT", Entry{Scheme: SchemeDirect}, "direct", "direct"},
	{"direct://127.0.0.2", Entry{Scheme: SchemeDirect, Local: netip.MustParsePrefix("127.0.0.2/32")},
		"direct://127.0.0.2", "direct@127.0.0.2"},
	{"direct://127.0.0.2/32", Entry{Scheme: SchemeDirect, Local: netip.MustParsePrefix("127.0.0.2/32")},
		"direct://127.0.0.2", "direct@127.0.0.2"},
	{"direct://[2001:db8::5]", Entry{Scheme: SchemeDirect, Local: netip.MustParsePrefix("2001:db8::5/128")},
		"direct://2001:db8::5", "direct@2001:db8::5"},
	{"direct://2001:db8::1/64", Entry{Scheme: SchemeDirect, Local: netip.MustParsePrefix("2001:db8::/64")},
		"direct://2001:db8::/64", "direct@2001:db8::/64"},
	{"direct://10.1.2.3/24", Entry{Scheme: SchemeDirect, Local: netip.MustParsePrefix("10.1.2.0/24")},
		"direct://10.1.2.0/24", "direct@10.1.2.0/24"},
}

func TestParseEntryValid(t *testing.T) {
	for _, c := range validEntries {
		e, err := ParseEntry(c.in)
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, e, c.in)
		assert.Equal(t, c.canonical, e.String(), c.in)
		assert.Equal(t, c.label, e.Redacted(), c.in)
		again, err := ParseEntry(e.String())
		require.NoError(t, err, c.in)
		assert.Equal(t, e, again, "round trip of %s", c.in)
	}
}

var invalidEntries = []string{
	"", "ftp://host:21", "socks4://u:p@h:1", "socks9://h:1", "http://", "http://host:0", "http://host:65536", "http://host:port",
	"host", "host:", "host:1:user", "http://:secret@host:1", "http://host:1/path", "http://host:1?q",
	"2001:db8::1", "[2001:db8::1", "[1.2.3.4]:80", "[fe80::1%eth0]:80", "bad_host!:80", "a..b:80",
	"http://us:er:pw@host:1x", "direct://", "direct://nope", "direct://10.0.0.0/33", "direct://10.0.0.0/-1",
	"direct://::ffff:10.0.0.0/120", "http://u%zz:p@h:1", "http://u:p%0a@h:1", "host:80 extra",
	"socks5://" + strings.Repeat("u", 256) + ":p@h:1", "{session}x{:80",
}

func TestParseEntryInvalid(t *testing.T) {
	for _, in := range invalidEntries {
		_, err := ParseEntry(in)
		require.Error(t, err, "%q", in)
		assert.True(t, errors.Is(err, ErrInvalidEntry), "%q: %v", in, err)
	}
}

func TestParseEntryErrorNeverEchoesPassword(t *testing.T) {
	for _, in := range []string{
		"http://user:hunter2@host:99999", "host:1x:user:hunter2", "user:hunter2@host",
		"socks5://user:hunter2@host:1/x", "http://user:hunter2%zz@host:1",
	} {
		_, err := ParseEntry(in)
		require.Error(t, err, in)
		assert.NotContains(t, err.Error(), "hunter2", in)
	}
}

func TestUpstreamLabelHidesPassword(t *testing.T) {
	e, err := ParseEntry("socks5://alice:hunter2@h.example:1080")
	require.NoError(t, err)
	u := NewUpstream(e)
	assert.Equal(t, "socks5://alice:***@h.example:1080", u.Label())
	assert.Equal(t, u.Label(), u.String())
	assert.NotContains(t, u.Label(), "hunter2")
	assert.Contains(t, e.String(), "hunter2", "canonical form keeps credentials for identity")
}
