package check

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/rotate"
)

// parseCases are the table for TestParse and the fuzz seeds.
var parseCases = []struct {
	name string
	data string
	want []string // canonical entries
	errs int
}{
	{"list.txt", "1.2.3.4:8080\n", []string{"http://1.2.3.4:8080"}, 0},
	{"list.txt", "\xef\xbb\xbf# comment\r\nsocks5://u:p@5.6.7.8:1080 # trailing\r\n\r\n1.2.3.4:8080:user:pa#ss\r\n",
		[]string{"socks5://u:p@5.6.7.8:1080", "http://user:pa%23ss@1.2.3.4:8080"}, 0},
	{"list.txt", "1.2.3.4:8080 US-H-S +\n9.9.9.9 3128\nhttps://p.example:8443\n", []string{"http://1.2.3.4:8080",
		"http://9.9.9.9:3128", "https://p.example:8443"}, 0},
	{"list.txt", "[2001:db8::1]:8080\ndirect\ndirect://127.0.0.5\n", []string{"http://[2001:db8::1]:8080", "direct", "direct://127.0.0.5"}, 0},
	{"list.txt", "not a proxy\nftp://x:1\n1.2.3.4:8080\n", []string{"http://1.2.3.4:8080"}, 2},
	{"list.txt", strings.Repeat("x", maxLineLen+1) + "\n1.2.3.4:1\n", []string{"http://1.2.3.4:1"}, 1},
	{"proxies/socks5.txt", "1.2.3.4:1080\nu:p@5.6.7.8:1081\nhttp://9.9.9.9:80\n",
		[]string{"socks5://1.2.3.4:1080", "socks5://u:p@5.6.7.8:1081", "http://9.9.9.9:80"}, 0},
	{"https://lists.example/SOCKS5_list.txt?…", "1.2.3.4:1080\n", []string{"socks5://1.2.3.4:1080"}, 0},
	{"p.json", `[{"ip":"1.2.3.4","port":8080,"protocol":"http"},{"ip":"5.6.7.8","port":"1080","protocol":"socks5","username":"u","password":"p@ss"}]`,
		[]string{"http://1.2.3.4:8080", "socks5://u:p%40ss@5.6.7.8:1080"}, 0},
	{"p.json", `{"data":[{"ip":"1.2.3.4","port":"3128","protocols":["socks4","https"]},{"host":"::1","port":1080,"type":"SOCKS5H"}]}`,
		[]string{"http://1.2.3.4:3128", "socks5h://[::1]:1080"}, 0},
	{"socks5.json", `["1.2.3.4:1080", {"address":"5.6.7.8:1081"}, "http://9.9.9.9:1"]`,
		[]string{"socks5://1.2.3.4:1080", "socks5://5.6.7.8:1081", "http://9.9.9.9:1"}, 0},
	{"p.json", `[{"ip":"1.2.3.4"},{"port":1},{"ip":"1.2.3.4","port":1,"protocol":"ftp"},7,{"ip":"1.2.3.4","port":99999}]`, nil, 5},
	{"p.json", `[{"ip":"1.2.3.4","port":1080,"protocols":["socks4","socks4a"]},{"ip":"5.6.7.8","port":1,"protocol":"SOCKS4A","user":"id"}]`,
		[]string{"socks4://1.2.3.4:1080", "socks4a://id@5.6.7.8:1"}, 0},
	{"proxies/socks4.txt", "1.2.3.4:1080\n", []string{"socks4://1.2.3.4:1080"}, 0},
	{"p.json", `{"ip":"1.2.3.4","port":8080}`, []string{"http://1.2.3.4:8080"}, 0},
	{"p.json", `{"count":3}`, nil, 1},
	{"p.json", `[]`, nil, 0},
}

func TestParse(t *testing.T) {
	for i, c := range parseCases {
		entries, errs := Parse(c.name, []byte(c.data))
		var got []string
		for _, e := range entries {
			got = append(got, e.String())
		}
		assert.Equal(t, c.want, got, "case %d: %s", i, c.name)
		assert.Len(t, errs, c.errs, "case %d: %v", i, errs)
		for _, err := range errs {
			assertProblem(t, err)
		}
	}
}

// assertProblem checks a Parse or Load error is one of the documented types.
func assertProblem(t *testing.T, err error) {
	t.Helper()
	var le *rotate.LineError
	var ie *ItemError
	var se *SourceError
	assert.True(t, errors.As(err, &le) || errors.As(err, &ie) || errors.As(err, &se), "%T %v", err, err)
}

func TestParseErrorsHidePasswords(t *testing.T) {
	data := "http://user:hunter2@host:99999\nuser:hunter2@\n"
	_, errs := Parse("l.txt", []byte(data))
	require.Len(t, errs, 2)
	_, jerrs := Parse("l.json", []byte(`[{"ip":"bad host!","port":1,"username":"u","password":"hunter2"}]`))
	require.Len(t, jerrs, 1)
	for _, err := range append(errs, jerrs...) {
		assert.NotContains(t, err.Error(), "hunter2")
	}
	var le *rotate.LineError
	require.ErrorAs(t, errs[1], &le)
	assert.Equal(t, 2, le.Line)
}

func TestLoadSourcesAndDedupe(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.txt")
	require.NoError(t, os.WriteFile(a, []byte("1.2.3.4:8080\nhttp://1.2.3.4:8080/\n5.6.7.8:3128\n"), 0o600))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/list.json":
			_, _ = w.Write([]byte(`[{"ip":"5.6.7.8","port":3128},{"ip":"9.9.9.9","port":80}]`))
		case "/big.txt":
			_, _ = w.Write([]byte(strings.Repeat("1.2.3.4:1\n", 100)))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	srcs := []string{a, srv.URL + "/list.json", srv.URL + "/missing.txt?token=secret", srv.URL + "/big.txt",
		filepath.Join(dir, "nope.txt"), "-", "direct://127.0.0.5", "direct://bad"}
	l := Load(context.Background(), srcs, LoadOptions{MaxSize: 512, Stdin: strings.NewReader("socks5://1.1.1.1:1080\n9.9.9.9:80\n")})
	var got []string
	for _, e := range l.Entries {
		got = append(got, e.String())
	}
	assert.Equal(t, []string{"http://1.2.3.4:8080", "http://5.6.7.8:3128", "http://9.9.9.9:80",
		"socks5://1.1.1.1:1080", "direct://127.0.0.5"}, got)
	assert.Equal(t, 3, l.Duplicates)
	require.Len(t, l.Problems, 4, "%v", l.Problems)
	for _, p := range l.Problems {
		assertProblem(t, p)
		assert.NotContains(t, p.Error(), "secret")
	}
	assert.ErrorIs(t, l.Problems[0], ErrFetch)
	assert.ErrorIs(t, l.Problems[1], ErrListTooLarge)
	assert.ErrorIs(t, l.Problems[2], fs.ErrNotExist)
	assert.ErrorIs(t, l.Problems[3], rotate.ErrInvalidEntry)

	l = Load(context.Background(), []string{"-"}, LoadOptions{})
	require.Len(t, l.Problems, 1)
	assert.ErrorIs(t, l.Problems[0], ErrNoStdin)
}

// FuzzParse: Parse never panics, every entry it returns is valid and
// round-trips through its canonical form, and every problem has a
// documented type.
func FuzzParse(f *testing.F) {
	for _, c := range parseCases {
		f.Add(c.name, []byte(c.data))
	}
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		entries, errs := Parse(name, data)
		for _, e := range entries {
			again, err := rotate.ParseEntry(e.String())
			if err != nil || again != e {
				t.Fatalf("entry %q does not round-trip: %v", e.Redacted(), err)
			}
		}
		for _, err := range errs {
			var le *rotate.LineError
			var ie *ItemError
			var se *SourceError
			if !errors.As(err, &le) && !errors.As(err, &ie) && !errors.As(err, &se) {
				t.Fatalf("untyped problem %T: %v", err, err)
			}
		}
	})
}
