package rotate

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzParseEntry checks ParseEntry's invariants: failures wrap
// ErrInvalidEntry; successes round-trip through the canonical form, carry a
// usable address, and redact exactly the password; ParseList agrees with
// ParseEntry on a single line.
func FuzzParseEntry(f *testing.F) {
	for _, c := range validEntries {
		f.Add(c.in)
	}
	for _, in := range invalidEntries {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		e, err := ParseEntry(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("%q: error %v does not wrap ErrInvalidEntry", in, err)
			}
			return
		}
		canon := e.String()
		again, err := ParseEntry(canon)
		if err != nil {
			t.Fatalf("%q: canonical %q does not parse: %v", in, canon, err)
		}
		if again != e {
			t.Fatalf("%q: round trip %+v != %+v", in, again, e)
		}
		if again.String() != canon {
			t.Fatalf("%q: canonical form not stable: %q != %q", in, again.String(), canon)
		}
		if e.Scheme != SchemeDirect && (e.Host == "" || e.Port == 0) {
			t.Fatalf("%q: no address in %+v", in, e)
		}
		if e.User == "" && e.Pass != "" {
			t.Fatalf("%q: password without user", in)
		}
		label := e.Redacted()
		if e.Pass != "" {
			want := strings.Replace(canon, ":"+escapeUserinfo(e.Pass)+"@", ":***@", 1)
			if label != want {
				t.Fatalf("%q: label %q, want %q", in, label, want)
			}
		} else if e.Scheme != SchemeDirect && label != canon {
			t.Fatalf("%q: label %q differs from %q without a password", in, label, canon)
		}
		if !strings.ContainsAny(in, "#\r\n") {
			ups, errs := ParseList("fuzz", strings.NewReader(in))
			if len(errs) != 0 || len(ups) != 1 || ups[0].Entry() != e {
				t.Fatalf("%q: ParseList disagrees: %v %v", in, ups, errs)
			}
		}
	})
}

// FuzzReadReply feeds arbitrary upstream replies to the CONNECT reply
// parser: it never panics, a success consumes exactly a head ending in a
// blank line, and every failure is a *ProxyError or an I/O error.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 Connection established\r\n\r\nEXTRA",
		"HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
		"HTTP/1.1 502 Bad Gateway\r\nX-Squid-Error: ERR_CONNECT_FAIL 111\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\n\n",
		"HTTP/1.1 2000 x\r\n\r\n", "HTTP/2 200\r\n\r\n", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sr := strings.NewReader(in)
		br := bufio.NewReaderSize(sr, 4096)
		rep, err := readReply(br)
		if err != nil {
			var pe *ProxyError
			if !errors.As(err, &pe) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%q: unexpected error type %T %v", in, err, err)
			}
			return
		}
		if rep.code < 100 || rep.code > 999 {
			t.Fatalf("%q: code %d", in, rep.code)
		}
		consumed := len(in) - br.Buffered() - sr.Len()
		head := in[:consumed]
		if !strings.HasSuffix(head, "\n\n") && !strings.HasSuffix(head, "\n\r\n") {
			t.Fatalf("%q: head %q does not end with a blank line", in, head)
		}
		rest, _ := io.ReadAll(br)
		if string(rest) != in[consumed:] {
			t.Fatalf("%q: bytes after the head lost", in)
		}
	})
}
