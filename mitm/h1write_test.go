package mitm

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/fingerprint"
)

// written writes req as hopper does over HTTP/1.1 and returns the bytes.
func written(t testing.TB, req *http.Request, p *Profile) ([]byte, error) {
	t.Helper()
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	err := writeRequestH1(bw, req, p)
	_ = bw.Flush()
	return buf.Bytes(), err
}

// names are the field names of a written request head, in order.
func names(t testing.TB, raw []byte) []string {
	t.Helper()
	c := fingerprint.NewHTTP1Capture()
	_, _ = c.Write(raw)
	require.NoError(t, c.Err())
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	require.NoError(t, err)
	req.RequestURI = req.URL.RequestURI()
	head, ok := c.Claim(req)
	require.True(t, ok)
	return head.Names()
}

func TestWriteRequestH1InTheBrowsersOrder(t *testing.T) {
	chrome, firefox := profile(t, "chrome"), profile(t, "firefox")
	for _, tc := range []struct {
		name   string
		p      *Profile
		method string
		body   string
		hdr    []string
		want   []string
	}{
		{"chrome navigation", chrome, "GET", "", []string{"User-Agent", "u", "Accept", "a", "sec-ch-ua", "b", "Accept-Language", "l", "Sec-Fetch-Mode", "navigate", "X-Z", "1", "X-A", "2"},
			[]string{"Host", "Connection", "X-A", "X-Z", "sec-ch-ua", "User-Agent", "Accept", "Sec-Fetch-Mode", "Accept-Language"}},
		{"chrome fetch", chrome, "POST", "{}", []string{"Content-Type", "application/json", "User-Agent", "u", "sec-ch-ua-platform", "p", "Cookie", "c=1"},
			[]string{"Host", "Connection", "Content-Length", "sec-ch-ua-platform", "User-Agent", "Content-Type", "Cookie"}},
		{"firefox POST", firefox, "POST", "a=b", []string{"Cookie", "c=1", "User-Agent", "u", "Content-Type", "x", "Origin", "o", "Referer", "r", "X-Custom", "1"},
			[]string{"Host", "User-Agent", "Content-Type", "X-Custom", "Content-Length", "Origin", "Referer", "Connection", "Cookie"}},
		{"empty POST says Content-Length: 0", firefox, "POST", "", nil, []string{"Host", "Content-Length", "Connection"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, "https://shop.example/p?q=1", body)
			require.NoError(t, err)
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				req.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			raw, err := written(t, req, tc.p)
			require.NoError(t, err)
			assert.True(t, bytes.HasPrefix(raw, []byte(tc.method+" /p?q=1 HTTP/1.1\r\nHost: shop.example\r\n")), "%s", raw)
			assert.Equal(t, tc.want, names(t, raw))
			got, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
			require.NoError(t, err)
			b, err := io.ReadAll(got.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.body, string(b))
		})
	}
}

func TestWriteRequestH1StreamsChunkedWithTrailers(t *testing.T) {
	req, err := http.NewRequest("PUT", "https://shop.example/up", io.MultiReader(strings.NewReader("hello "), strings.NewReader("world")))
	require.NoError(t, err)
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Sum": {"abc"}}
	raw, err := written(t, req, profile(t, "chrome"))
	require.NoError(t, err)
	got, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	require.NoError(t, err)
	assert.Equal(t, []string{"chunked"}, got.TransferEncoding)
	b, err := io.ReadAll(got.Body)
	require.NoError(t, err)
	assert.Equal(t, "hello world", string(b))
	assert.Equal(t, "abc", got.Trailer.Get("X-Sum"))
}

func TestWriteRequestH1RefusesSplitting(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"X-Evil", "a\r\nInjected: 1"},
		{"Bad Name", "v"},
		{"X-Nul", "a\x00b"},
	} {
		req, err := http.NewRequest("GET", "https://shop.example/", nil)
		require.NoError(t, err)
		req.Header[tc.name] = []string{tc.value}
		_, err = written(t, req, profile(t, "chrome"))
		assert.ErrorIs(t, err, errBadHeader, tc.name)
	}
	req, err := http.NewRequest("POST", "https://shop.example/", strings.NewReader("abc"))
	require.NoError(t, err)
	req.ContentLength = 10
	_, err = written(t, req, profile(t, "chrome"))
	assert.ErrorIs(t, err, errShortBody)
}

// In mirror mode the client's own order and spelling go out.
func TestWriteRequestH1MirrorsTheClient(t *testing.T) {
	head := &fingerprint.RequestHead{Method: "GET", Target: "/", Fields: []fingerprint.Field{
		{Name: "Host", Value: "shop.example"}, {Name: "user-agent", Value: "u"}, {Name: "X-B", Value: "2"}, {Name: "accept", Value: "*/*"}}}
	req, err := http.NewRequestWithContext(withClientHead(context.Background(), head), "GET", "https://shop.example/", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "*/*")
	req.Header.Set("User-Agent", "u")
	req.Header.Set("X-B", "2")
	raw, err := written(t, req, mirrorProfile)
	require.NoError(t, err)
	assert.Equal(t, []string{"Host", "user-agent", "X-B", "accept", "Connection"}, names(t, raw))
}

func FuzzWriteRequestH1(f *testing.F) {
	f.Add("X-A", "1", "X-B", "2", "/p?q=1", "body")
	f.Add("sec-ch-ua", "\"x\"", "Cookie", "a=b", "/", "")
	ps := Profiles()
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, path, body string) {
		for i := range ps {
			u, err := url.Parse("https://shop.example" + path)
			if err != nil {
				return
			}
			req := &http.Request{Method: "POST", Host: "shop.example", URL: u, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)),
				ContentLength: int64(len(body))}
			req.Header[k1] = []string{v1}
			req.Header[k2] = append(req.Header[k2], v2)
			raw, err := written(t, req, &ps[i])
			if err != nil {
				return
			}
			got, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
			if err != nil {
				t.Fatalf("written request does not parse: %v\n%q", err, raw)
			}
			b, _ := io.ReadAll(got.Body)
			if string(b) != body {
				t.Fatalf("body %q, want %q", b, body)
			}
		}
	})
}
