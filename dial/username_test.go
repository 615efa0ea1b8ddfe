package dial

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParseUsername(t *testing.T) {
	cases := []struct {
		raw  string
		want Username
	}{
		{"", Username{}},
		{"alice", Username{Base: "alice"}},
		{"alice-session-42", Username{Base: "alice", Session: "42"}},
		{"alice-country-US", Username{Base: "alice", Country: "us"}},
		{"alice-session-42-country-de", Username{Base: "alice", Session: "42", Country: "de"}},
		{"alice-country-de-session-a-b-c", Username{Base: "alice", Session: "a-b-c", Country: "de"}},
		{"my-user-session-x", Username{Base: "my-user", Session: "x"}},
		{"-session-", Username{Base: "", Session: ""}},
		{"session-1", Username{Base: "session-1"}},
		{"alice-Session-7-COUNTRY-DE", Username{Base: "alice", Session: "7", Country: "de"}},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, ParseUsername(c.raw), c.raw)
	}
}

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"alice", "alice-session-42-country-us", "a-country--session-", "-session--session-x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u := ParseUsername(raw)
		// Base is always a prefix of the input, and re-parsing the rendered
		// form is stable.
		if len(u.Base) > len(raw) || raw[:len(u.Base)] != u.Base {
			t.Fatalf("base %q not a prefix of %q", u.Base, raw)
		}
		again := ParseUsername(u.String())
		if u.Session != "" || u.Country != "" {
			if again.Session != u.Session || again.Country != u.Country {
				t.Fatalf("round trip %q: %+v != %+v", raw, again, u)
			}
		}
	})
}
