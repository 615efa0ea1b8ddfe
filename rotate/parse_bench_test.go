package rotate

import (
	"fmt"
	"strings"
	"testing"
)

// Microbenchmarks of the parsers that read operator input (list entries,
// whole lists) and network input (judge reports); compare runs with
// benchstat.

var benchEntries = []string{
	"http://user:pass@127.0.0.2:8080",
	"socks5://127.0.0.3:1080",
	"127.0.0.4:3128:user:pass",
	"https://127.0.0.5:8443",
	"direct://127.0.0.6",
}

func BenchmarkParseEntry(b *testing.B) {
	for _, s := range benchEntries {
		b.Run(strings.SplitN(s, ":", 2)[0], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseEntry(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseList reads a 1,000-line list, as an updater refresh does.
func BenchmarkParseList(b *testing.B) {
	var list strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&list, "http://u%d:p@127.0.%d.%d:%d\n", i, i/250, i%250+1, 1024+i)
	}
	text := list.String()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		ups, errs := ParseList("bench.txt", strings.NewReader(text))
		if len(errs) > 0 || len(ups) != 1000 {
			b.Fatalf("%d upstreams, errors %v", len(ups), errs)
		}
	}
}

func BenchmarkParseJudgeReport(b *testing.B) {
	for name, body := range map[string]string{
		"json":   `{"ip":"203.0.113.7","headers":{"Via":["1.1 p"],"User-Agent":["curl/8"],"Accept":["*/*"]}}`,
		"azenv":  "<pre>REMOTE_ADDR = 203.0.113.7\nHTTP_USER_AGENT = curl/8\nHTTP_ACCEPT = */*\nHTTP_X_FORWARDED_FOR = 1.2.3.4</pre>",
		"bareip": "203.0.113.7\n",
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseJudgeReport([]byte(body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
