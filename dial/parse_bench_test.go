package dial

import "testing"

// Microbenchmarks of the per-request parsers: the username's client
// controls and host patterns (rules, --mitm-hosts); compare with benchstat.

func BenchmarkParseUsername(b *testing.B) {
	for _, s := range []string{"alice", "alice-session-7f3a-9c-country-US", "alice-country-de"} {
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if u := ParseUsername(s); u.Base != "alice" {
					b.Fatalf("base %q", u.Base)
				}
			}
		})
	}
}

func BenchmarkHostPatternMatch(b *testing.B) {
	for _, c := range []struct{ pattern, host string }{
		{"*.example.com", "api.eu.example.com"},
		{"/^(www|api)\\.example\\.(com|net)$/", "api.example.net"},
	} {
		p, err := ParseHostPattern(c.pattern)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.pattern, func(b *testing.B) {
			for b.Loop() {
				if !p.Match(c.host) {
					b.Fatalf("%s does not match %s", c.pattern, c.host)
				}
			}
		})
	}
}
