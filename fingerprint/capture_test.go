package fingerprint

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"golang.org/x/net/nettest"
)

// h2ClientBytes builds what an HTTP/2 client sends: a Firefox-like preface, a
// request whose header block spans HEADERS and CONTINUATION, its body, a
// second request (HPACK dynamic table references), and trailers.
func h2ClientBytes(t testing.TB, bodySize int) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&buf, nil)
	require.NoError(t, fr.WriteSettings(
		http2.Setting{ID: http2.SettingHeaderTableSize, Val: 65536},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 131072},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16384},
		http2.Setting{ID: 0x0a0a, Val: 7}, // an unknown (GREASE) identifier is kept
	))
	require.NoError(t, fr.WriteWindowUpdate(0, 12517377))
	require.NoError(t, fr.WritePriority(3, http2.PriorityParam{Weight: 200}))
	require.NoError(t, fr.WritePriority(9, http2.PriorityParam{StreamDep: 7, Weight: 0}))
	require.NoError(t, fr.WriteSettingsAck()) // after the preface: ignored
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	block := func(fields ...string) []byte {
		hb.Reset()
		for i := 0; i < len(fields); i += 2 {
			require.NoError(t, enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}))
		}
		return append([]byte(nil), hb.Bytes()...)
	}
	b := block(":method", "POST", ":path", "/form?a=1", ":authority", "judge.test", ":scheme", "https",
		"user-agent", "ff", "content-type", "text/plain", "x-long", strings.Repeat("v", 30), "cookie", "a=1", "cookie", "b=2")
	require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 15, BlockFragment: b[:10],
		Priority: http2.PriorityParam{StreamDep: 13, Weight: 41}, PadLength: 3}))
	require.NoError(t, fr.WriteContinuation(15, false, b[10:40]))
	require.NoError(t, fr.WriteContinuation(15, true, b[40:]))
	require.NoError(t, fr.WriteData(15, false, bytes.Repeat([]byte("d"), bodySize)))
	require.NoError(t, fr.WriteRawFrame(0xb0, 0, 0, []byte("unknown frame type")))
	require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 15, BlockFragment: block("x-trailer", "t"), EndStream: true, EndHeaders: true}))
	require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 17, EndStream: true, EndHeaders: true,
		BlockFragment: block(":method", "GET", ":path", "/", ":authority", "judge.test", ":scheme", "https", "user-agent", "ff", "x-long", strings.Repeat("v", 30))}))
	require.NoError(t, fr.WritePing(false, [8]byte{1}))
	return buf.Bytes()
}

func TestHTTP2CaptureInAnyChunks(t *testing.T) {
	in := h2ClientBytes(t, 40000)
	for _, size := range []int{len(in), 4096, 9, 1} {
		c := NewHTTP2Capture()
		for b := in; len(b) > 0; {
			n := min(size, len(b))
			m, err := c.Write(b[:n])
			require.NoError(t, err)
			require.Equal(t, n, m)
			b = b[n:]
		}
		require.NoError(t, c.Err(), "size %d", size)
		pre, complete := c.Preface()
		require.True(t, complete)
		assert.Equal(t, "1:65536;4:131072;5:16384;2570:7|12517377|3:0:0:201,9:0:7:1|m,p,a,s", pre.Akamai(), "size %d", size)
		assert.Equal(t, uint32(15), pre.FirstStreamID)
		require.NotNil(t, pre.HeadersPriority)
		assert.Equal(t, "15:0:13:42", pre.HeadersPriority.String())

		post := httptestRequest("POST", "/form?a=1", "User-Agent", "Content-Type", "X-Long", "Cookie")
		head, ok := c.Claim(post)
		require.True(t, ok)
		assert.Equal(t, []string{"user-agent", "content-type", "x-long", "cookie", "cookie"}, head.Names())
		assert.Equal(t, []string{":method", ":path", ":authority", ":scheme"}, head.Pseudo)
		assert.Equal(t, uint32(15), head.StreamID)

		get := httptestRequest("GET", "/", "User-Agent", "X-Long")
		head, ok = c.Claim(get)
		require.True(t, ok, "the second request decodes with the dynamic table")
		assert.Equal(t, []string{"user-agent", "x-long"}, head.Names())
		assert.Equal(t, strings.Repeat("v", 30), head.Fields[1].Value)
		assert.Nil(t, head.Priority)

		_, ok = c.Claim(get)
		assert.False(t, ok, "a head is claimed once; trailers are no request")
	}
}

func httptestRequest(method, uri string, names ...string) *http.Request {
	r := &http.Request{Method: method, RequestURI: uri, Header: http.Header{}}
	for _, n := range names {
		r.Header.Add(n, "x")
	}
	return r
}

func TestHTTP2CaptureStops(t *testing.T) {
	valid := h2ClientBytes(t, 10)
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"not a preface", []byte("GET / HTTP/1.1\r\n\r\n")},
		{"odd SETTINGS", append([]byte(http2.ClientPreface), 0, 0, 5, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5)},
		{"huge frame", append([]byte(http2.ClientPreface), 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 1)},
		{"bad HPACK", append([]byte(http2.ClientPreface), 0, 0, 1, 1, 4, 0, 0, 0, 1, 0xff)},
		{"stray CONTINUATION", append([]byte(http2.ClientPreface), 0, 0, 0, 9, 4, 0, 0, 0, 1)},
		{"truncated preface then garbage", append([]byte(http2.ClientPreface[:10]), 'x')},
		{"PING inside a header block", append(append([]byte(http2.ClientPreface), 0, 0, 0, 1, 0, 0, 0, 0, 1), 0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewHTTP2Capture()
			_, _ = c.Write(tc.in)
			_, _ = c.Write(valid) // nothing after a stop is recorded
			require.ErrorIs(t, c.Err(), ErrNotHTTP2)
			_, complete := c.Preface()
			assert.False(t, complete)
		})
	}
}

func TestHTTP1CaptureInAnyChunks(t *testing.T) {
	in := "GET /a HTTP/1.1\r\nHost: judge.test\r\nUser-Agent: x\r\nsec-ch-ua: \"y\"\r\nAccept: */*\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: judge.test\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello" +
		"\r\n" + // a stray empty line between requests
		"PUT /c HTTP/1.1\r\nHost: judge.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" +
		"5;ext=1\r\nHTTP/\r\n3\r\n1.1\r\n0\r\nX-Trailer: t\r\n\r\n" +
		"DELETE /d HTTP/1.1\r\nHost: judge.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
		"GET http://judge.test/e HTTP/1.0\r\nhost: judge.test\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
	for _, size := range []int{len(in), 7, 1} {
		c := NewHTTP1Capture()
		for b := []byte(in); len(b) > 0; {
			n := min(size, len(b))
			_, _ = c.Write(b[:n])
			b = b[n:]
		}
		require.NoError(t, c.Err(), "size %d", size)
		for _, tc := range []struct {
			method, uri string
			names       []string
		}{
			{"GET", "/a", []string{"Host", "User-Agent", "sec-ch-ua", "Accept"}},
			{"POST", "/b", []string{"Host", "Content-Length", "Content-Type"}},
			{"PUT", "/c", []string{"Host", "Transfer-Encoding"}},
			{"DELETE", "/d", []string{"Host", "Transfer-Encoding"}},
			{"GET", "http://judge.test/e", []string{"host", "X-A", "X-A"}},
		} {
			head, ok := c.Claim(httptestRequest(tc.method, tc.uri))
			require.True(t, ok, "%s %s (size %d)", tc.method, tc.uri, size)
			assert.Equal(t, tc.names, head.Names(), "%s %s", tc.method, tc.uri)
		}
	}
}

func TestHTTP1CaptureStops(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"not HTTP", "\x16\x03\x01\x02\x00\r\n\r\n"},
		{"bad header line", "GET / HTTP/1.1\r\nno colon\r\n\r\n"},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n"},
		{"bad length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"},
		{"two lengths", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"},
		{"bad chunk", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"},
		{"upgrade", "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"},
		{"endless head", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", maxH1Head+10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewHTTP1Capture()
			_, _ = c.Write([]byte(tc.in))
			_, _ = c.Write([]byte("GET /later HTTP/1.1\r\n\r\n"))
			require.ErrorIs(t, c.Err(), ErrNotHTTP1)
			_, ok := c.Claim(httptestRequest("GET", "/later"))
			assert.False(t, ok)
		})
	}
}

func TestClaimPrefersMatchingNames(t *testing.T) {
	c := NewHTTP1Capture()
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\nX-One: 1\r\n\r\nGET / HTTP/1.1\r\nX-Two: 2\r\n\r\n"))
	head, ok := c.Claim(httptestRequest("GET", "/", "X-Two"))
	require.True(t, ok)
	assert.Equal(t, []string{"X-Two"}, head.Names())
	head, ok = c.Claim(httptestRequest("GET", "/", "X-Three"))
	require.True(t, ok, "falls back to the oldest for method and target")
	assert.Equal(t, []string{"X-One"}, head.Names())
}

func TestAkamaiFormat(t *testing.T) {
	assert.Equal(t, "|00|0|", HTTP2{}.Akamai())
	h := HTTP2{
		Settings:          []Setting{{1, 65536}, {2, 0}, {4, 6291456}, {6, 262144}},
		WindowUpdate:      15663105,
		PseudoHeaderOrder: []string{":method", ":authority", ":scheme", ":path"},
		HeadersPriority:   &Priority{StreamID: 1, Exclusive: true, Weight: 255},
	}
	assert.Equal(t, "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p", h.Akamai())
	c := h.Clone()
	c.Settings[0].Value = 1
	c.HeadersPriority.Weight = 1
	assert.Equal(t, uint32(65536), h.Settings[0].Value, "Clone is deep")
	assert.Equal(t, uint8(255), h.HeadersPriority.Weight)
	assert.Equal(t, "1:1:0:256", h.HeadersPriority.String())
}

// Tee must behave as a net.Conn.
func TestTeeConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		a, b := net.Pipe()
		return Tee(a, io.Discard), b, func() { a.Close(); b.Close() }, nil
	})
}

func TestTeeRecordsReads(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var seen bytes.Buffer
	c := Tee(a, &seen)
	go func() { _, _ = b.Write([]byte("hello")) }()
	buf := make([]byte, 5)
	_, err := io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", seen.String())
	_, isTLS := c.(connectionStater)
	assert.False(t, isTLS)
}

func FuzzHTTP2Capture(f *testing.F) {
	f.Add(h2ClientBytes(f, 10), uint8(7))
	f.Add([]byte(http2.ClientPreface), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		c := NewHTTP2Capture()
		size := int(chunk) + 1
		for len(in) > 0 {
			n := min(size, len(in))
			_, _ = c.Write(in[:n])
			in = in[n:]
		}
		pre, complete := c.Preface()
		if complete && len(pre.PseudoHeaderOrder) == 0 {
			t.Fatalf("a complete preface without pseudo-headers")
		}
		_ = pre.Akamai()
	})
}

func FuzzHTTP1Capture(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"), uint8(3))
	f.Add([]byte("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"), uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		c := NewHTTP1Capture()
		size := int(chunk) + 1
		all := string(in)
		for len(in) > 0 {
			n := min(size, len(in))
			_, _ = c.Write(in[:n])
			in = in[n:]
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, h := range c.log.heads {
			if !strings.Contains(all, h.Method+" "+h.Target+" ") {
				t.Fatalf("head %s %s not in the input", h.Method, h.Target)
			}
			for _, f := range h.Fields {
				if !strings.Contains(all, f.Name+":") {
					t.Fatalf("field %q not in the input", f.Name)
				}
			}
		}
		if len(c.buf) > maxH1Head+maxChunkLine {
			t.Fatalf("buffered %d bytes", len(c.buf))
		}
	})
}

// What Chromium 156 sent after ALPN h2 and http/1.1, recorded off the wire
// (the seed corpus), reads as Chrome's fingerprints.
func TestCapturesOfChromium(t *testing.T) {
	h2 := NewHTTP2Capture()
	_, _ = h2.Write(corpusBytes(t, "FuzzHTTP2Capture", "chromium-156"))
	require.NoError(t, h2.Err())
	pre, complete := h2.Preface()
	require.True(t, complete)
	assert.Equal(t, "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p", pre.Akamai())
	assert.Equal(t, "1:1:0:256", pre.HeadersPriority.String())
	head, ok := h2.Claim(httptestRequest("GET", "/"))
	require.True(t, ok)
	assert.Equal(t, []string{"sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform", "upgrade-insecure-requests", "user-agent", "accept",
		"sec-fetch-site", "sec-fetch-mode", "sec-fetch-user", "sec-fetch-dest", "accept-encoding", "accept-language", "priority"}, head.Names())

	h1 := NewHTTP1Capture()
	_, _ = h1.Write(corpusBytes(t, "FuzzHTTP1Capture", "chromium-156"))
	require.NoError(t, h1.Err())
	head, ok = h1.Claim(httptestRequest("GET", "/"))
	require.True(t, ok)
	assert.Equal(t, []string{"Host", "Connection", "sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform", "Upgrade-Insecure-Requests", "User-Agent",
		"Accept", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-User", "Sec-Fetch-Dest", "Accept-Encoding", "Accept-Language"}, head.Names())
}
