package tunnel

import (
	"bytes"
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type wantHead struct {
	method, target string
	minor          int
	fields         [][2]string
}

var requestHeadCases = []struct {
	in   string
	want *wantHead // nil: must fail
}{
	{"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
		&wantHead{"GET", "http://example.com/", 1, [][2]string{{"Host", "example.com"}}}},
	{"CONNECT example.com:443 HTTP/1.1\r\n\r\n", &wantHead{"CONNECT", "example.com:443", 1, nil}},
	{"GET / HTTP/1.0\n\n", &wantHead{"GET", "/", 0, nil}},
	{"POST http://x/ HTTP/1.1\r\nA:  spaced \t\r\nB:\r\nC:v:w\r\n\r\n",
		&wantHead{"POST", "http://x/", 1, [][2]string{{"A", "spaced"}, {"B", ""}, {"C", "v:w"}}}},
	{"M-SEARCH * HTTP/1.1\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
		&wantHead{"M-SEARCH", "*", 1, [][2]string{{"X-Obs", "caf\xc3\xa9"}}}},
	{"GET / HTTP/1.1\r\nTab:\tv\tw\r\n\r\n", &wantHead{"GET", "/", 1, [][2]string{{"Tab", "v\tw"}}}},

	{"", nil},
	{"\r\n\r\n", nil},
	{"GET / HTTP/1.1\r\n", nil},                                   // no end
	{"GET  / HTTP/1.1\r\n\r\n", nil},                              // empty target
	{"GET / HTTP/1.1 \r\n\r\n", nil},                              // trailing space
	{"GET /\x01 HTTP/1.1\r\n\r\n", nil},                           // CTL in target
	{"GET / HTTP/2.0\r\n\r\n", nil},                               // not HTTP/1.x
	{"GET / http/1.1\r\n\r\n", nil},                               // case
	{"G(T / HTTP/1.1\r\n\r\n", nil},                               // bad method
	{"GET / HTTP/1.1\r\nNo colon\r\n\r\n", nil},                   // bad field
	{"GET / HTTP/1.1\r\nName : v\r\n\r\n", nil},                   // space before colon
	{"GET / HTTP/1.1\r\n: v\r\n\r\n", nil},                        // empty name
	{"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", nil},                 // obs-fold
	{"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", nil},                    // bare CR
	{"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n", nil},                  // NUL
	{"GET / HTTP/1.1\r\n\r\nextra", nil},                          // data after head
	{"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", nil}, // TLS
}

func TestParseRequestHead(t *testing.T) {
	var h head
	for _, c := range requestHeadCases {
		err := h.parseRequest([]byte(c.in))
		if c.want == nil {
			assert.ErrorIs(t, err, errBadRequest, "%q", c.in)
			continue
		}
		require.NoError(t, err, "%q", c.in)
		assert.Equal(t, *c.want, headOf(&h), "%q", c.in)
	}
}

func headOf(h *head) wantHead {
	w := wantHead{method: string(h.method), target: string(h.target), minor: h.minor}
	for _, f := range h.fields {
		w.fields = append(w.fields, [2]string{string(f.name), string(f.value)})
	}
	return w
}

func TestParseResponseHead(t *testing.T) {
	var h head
	ok := map[string][3]any{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n": {200, "OK", 1},
		"HTTP/1.0 404 Not Found\r\n\r\n":               {404, "Not Found", 0},
		"HTTP/1.1 204\r\n\r\n":                         {204, "", 1},
		"HTTP/1.1 101 Switching Protocols\r\nA: b\n\n": {101, "Switching Protocols", 1},
		"HTTP/1.1 599 \r\n\r\n":                        {599, "", 1},
	}
	for in, want := range ok {
		require.NoError(t, h.parseResponse([]byte(in)), "%q", in)
		assert.Equal(t, want[0], h.status, in)
		assert.Equal(t, want[1], string(h.reason), in)
		assert.Equal(t, want[2], h.minor, in)
	}
	for _, in := range []string{
		"", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 099 x\r\n\r\n", "ICY 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad\r\n\r\n", "HTTP/1.1 200 O\x01K\r\n\r\n",
	} {
		assert.ErrorIs(t, h.parseResponse([]byte(in)), errBadResponse, "%q", in)
	}
}

func TestHeadEnd(t *testing.T) {
	cases := map[string]int{
		"":                        -1,
		"GET / HTTP/1.1\r\n":      -1,
		"GET / HTTP/1.1\r\n\r":    -1,
		"GET / HTTP/1.1\r\n\r\n":  18,
		"GET / HTTP/1.1\n\n":      16,
		"GET / HTTP/1.1\r\n\nxyz": 17,
		"A\r\nB: c\r\n\r\nbody":   11,
	}
	for in, want := range cases {
		assert.Equal(t, want, headEnd([]byte(in), 0), "%q", in)
		// Resuming a scan over a growing buffer finds the same end.
		for cut := 0; cut <= len(in); cut++ {
			if headEnd([]byte(in[:cut]), 0) >= 0 {
				break
			}
			assert.Equal(t, want, headEnd([]byte(in), max(cut-3, 0)), "%q cut %d", in, cut)
		}
	}
}

func TestHeaderHelpers(t *testing.T) {
	var h head
	require.NoError(t, h.parseRequest([]byte("GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nconnection: X-A\r\nUpgrade: WebSocket\r\n\r\n")))
	assert.True(t, h.hasToken("connection", "upgrade"))
	assert.True(t, h.hasToken("Connection", "x-a"))
	assert.False(t, h.hasToken("Connection", "close"))
	assert.Equal(t, "WebSocket", string(h.get("UPGRADE")))
	assert.Nil(t, h.get("Missing"))
	assert.True(t, listedInConnection(&h, []byte("X-a")))
	assert.False(t, listedInConnection(&h, []byte("X-B")))
}

// The head parser copies its input: the caller's buffer may be reused
// without changing the parsed head.
func TestParseRequestHeadOwnsBytes(t *testing.T) {
	in := []byte("GET http://a/ HTTP/1.1\r\nX: y\r\n\r\n")
	var h head
	require.NoError(t, h.parseRequest(in))
	for i := range in {
		in[i] = 'z'
	}
	assert.Equal(t, "http://a/", string(h.target))
	assert.Equal(t, "y", string(h.get("X")))
}

func TestParseRequestHeadAllocs(t *testing.T) {
	in := []byte("GET http://example.com/path?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n")
	var h head
	require.NoError(t, h.parseRequest(in))
	allocs := testing.AllocsPerRun(100, func() { _ = h.parseRequest(in) })
	assert.Zero(t, allocs, "parsing into a reused head allocates nothing")
}

func BenchmarkParseRequestHead(b *testing.B) {
	in := []byte("GET http://example.com/path?q=1 HTTP/1.1\r\nHost: example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\nAccept: text/html,*/*;q=0.8\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n" +
		"Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n")
	var h head
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if headEnd(in, 0) != len(in) {
			b.Fatal("head end")
		}
		if err := h.parseRequest(in); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParseRequestHead checks that the parser never panics, that whatever it
// accepts is well formed (tokens, no line breaks or surrounding whitespace in
// values, a complete head), and that rendering an accepted head and parsing
// it again gives the same head.
func FuzzParseRequestHead(f *testing.F) {
	for _, c := range requestHeadCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h head
		err := h.parseRequest(data)
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("error %v does not wrap errBadRequest", err)
			}
			return
		}
		if n := headEnd(data, 0); n != len(data) {
			t.Fatalf("accepted %q but headEnd = %d", data, n)
		}
		if !isToken(h.method) || len(h.target) == 0 || h.minor < 0 || h.minor > 9 {
			t.Fatalf("bad request line: %q %q %d", h.method, h.target, h.minor)
		}
		if bytes.ContainsAny(h.target, " \t\r\n") {
			t.Fatalf("target %q", h.target)
		}
		rendered := []byte(string(h.method) + " " + string(h.target) + " HTTP/1." + strconv.Itoa(h.minor) + "\r\n")
		for _, fl := range h.fields {
			if !isToken(fl.name) || bytes.ContainsAny(fl.value, "\r\n\x00") ||
				len(trimOWS(fl.value)) != len(fl.value) {
				t.Fatalf("bad field %q: %q", fl.name, fl.value)
			}
			rendered = append(rendered, fl.name...)
			rendered = append(rendered, ": "...)
			rendered = append(rendered, fl.value...)
			rendered = append(rendered, "\r\n"...)
		}
		rendered = append(rendered, "\r\n"...)
		var again head
		if err := again.parseRequest(rendered); err != nil {
			t.Fatalf("re-parse of %q: %v", rendered, err)
		}
		if !assert.ObjectsAreEqual(headOf(&h), headOf(&again)) {
			t.Fatalf("round trip: %+v != %+v", headOf(&h), headOf(&again))
		}
	})
}
