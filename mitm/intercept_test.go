package mitm

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

// echo answers with the protocol it saw and the request headers, one per
// line ("Name: value"), sorted as http.Header.Write sorts them.
func echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "proto: %s\nhost: %s\n", r.Proto, r.Host)
		_ = r.Header.Write(w)
	})
}

func TestInterceptInjectsProfileHeaders(t *testing.T) {
	for _, tc := range []struct {
		name            string
		originH2, cliH2 bool
		wantProto       string
	}{
		{"h1 client, h1 origin", false, false, "HTTP/1.1"},
		{"h1 client, h2 origin", true, false, "HTTP/2.0"},
		{"h2 client, h2 origin", true, true, "HTTP/2.0"},
		{"h2 client, h1 origin", false, true, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, echo(), worldOpts{h2: tc.originH2})
			c := w.client(t, tc.cliH2)
			resp, body := get(t, c, "https://shop.example/page?q=1",
				"User-Agent", "Go-http-client/1.1", "Accept", "*/*", "X-Custom", "kept",
				"Hopper-Session", "s1", "Sec-CH-UA", `"Fake";v="1"`, "Accept-Language", "de")
			require.Equal(t, 200, resp.StatusCode, body)
			if tc.cliH2 {
				assert.Equal(t, 2, resp.ProtoMajor, "hopper speaks h2 to the client")
			} else {
				assert.Equal(t, 1, resp.ProtoMajor)
			}
			require.NotNil(t, resp.TLS)
			assert.Equal(t, "shop.example", resp.TLS.PeerCertificates[0].DNSNames[0])

			chrome, err := LookupProfile("chrome")
			require.NoError(t, err)
			reqs := w.origin.Requests()
			require.Len(t, reqs, 1)
			got := reqs[0]
			assert.Equal(t, tc.wantProto, got.Proto)
			assert.Equal(t, "shop.example", got.Host)
			assert.Equal(t, "/page", got.URL.Path)
			assert.Equal(t, "q=1", got.URL.RawQuery)
			for _, h := range chrome.Headers {
				want := h.Value
				if h.HTTP2Only && !tc.originH2 {
					want = "" // Chrome sends Priority over HTTP/2 only
				}
				assert.Equal(t, want, got.Header.Get(h.Name), "origin sees the profile's %s", h.Name)
			}
			assert.Equal(t, "kept", got.Header.Get("X-Custom"), "other client headers are kept")
			assert.Empty(t, got.Header.Get("Hopper-Session"), "Hopper-* never leaves")
			assert.NotContains(t, got.Header.Values("Sec-Ch-Ua"), `"Fake";v="1"`)
			assert.NotContains(t, body, "Go-http-client")

			for _, dr := range w.dialer.Requests() {
				assert.Equal(t, dial.ProtocolMITM, dr.Protocol)
				assert.Equal(t, "shop.example:443", dr.Target)
				assert.NotZero(t, dr.ConnID)
			}
		})
	}
}

func TestBrowserFetchKeepsItsOwnFetchMetadata(t *testing.T) {
	w := newWorld(t, echo(), worldOpts{h2: true, cfg: func(c *Config) { c.Profile = "firefox" }})
	resp, _ := get(t, w.client(t, true), "https://shop.example/api",
		"Sec-Fetch-Mode", "cors", "Sec-Fetch-Dest", "empty", "Accept", "application/json")
	require.Equal(t, 200, resp.StatusCode)
	got := w.origin.Requests()[0].Header
	assert.Equal(t, "cors", got.Get("Sec-Fetch-Mode"))
	assert.Equal(t, "empty", got.Get("Sec-Fetch-Dest"))
	assert.Equal(t, "application/json", got.Get("Accept"))
	assert.Empty(t, got.Get("Upgrade-Insecure-Requests"), "no navigation headers on a fetch")
	assert.Equal(t, profile(t, "firefox").Header("User-Agent"), got.Get("User-Agent"))
	assert.Empty(t, got.Get("Sec-Ch-Ua"), "Firefox sends no client hints")
}

func TestInvalidOriginCertificateIs502(t *testing.T) {
	t.Run("unknown authority", func(t *testing.T) {
		w := newWorld(t, echo(), worldOpts{cfg: func(c *Config) { c.RootCAs = nil }})
		resp, body := get(t, w.client(t, false), "https://shop.example/")
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
		assert.Equal(t, "upstream-failed", resp.Header.Get("Hopper-Error"))
		assert.Contains(t, body, "origin certificate for shop.example is not valid")
		assert.Contains(t, body, "unknown authority")
		assert.Empty(t, w.origin.Requests(), "nothing was sent to an unverified origin")
	})
	t.Run("wrong name", func(t *testing.T) {
		w := newWorld(t, echo(), worldOpts{h2: true})
		resp, body := get(t, w.client(t, true), "https://nothere.test/")
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
		assert.Contains(t, body, "origin certificate for nothere.test is not valid")
		assert.Contains(t, body, "nothere.test")
	})
	t.Run("insecure origin for testing", func(t *testing.T) {
		w := newWorld(t, echo(), worldOpts{cfg: func(c *Config) { c.RootCAs, c.InsecureOrigin = nil, true }})
		resp, _ := get(t, w.client(t, false), "https://shop.example/")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	})
}

func TestDialFailuresFollowTheErrorTable(t *testing.T) {
	for _, tc := range []struct {
		err       error
		status    int
		hopperErr string
	}{
		{dial.ErrNoUpstream, 503, "no-upstream"},
		{fmt.Errorf("%w: x", dial.ErrTimeout), 504, "timeout"},
		{dial.ErrDenied, 403, ""},
		{&dial.Error{Upstream: "u", Target: "t", Attempt: 1, Err: dial.ErrTargetRefused}, 502, "upstream-failed"},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			w := newWorld(t, echo(), worldOpts{})
			w.ic.cfg.Dialer = dial.DialerFunc(func(context.Context, *dial.Request) (*dial.Outbound, error) { return nil, tc.err })
			resp, body := get(t, w.client(t, false), "https://shop.example/")
			assert.Equal(t, tc.status, resp.StatusCode, body)
			assert.Equal(t, tc.hopperErr, resp.Header.Get("Hopper-Error"))
			assert.True(t, strings.HasPrefix(body, "hopper: "), body)
		})
	}
}

func TestResponseStreamsToTheClient(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("origin h2=%v", h2), func(t *testing.T) {
			gate := make(chan struct{})
			w := newWorld(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintln(w, "first")
				w.(http.Flusher).Flush()
				select {
				case <-gate:
				case <-time.After(10 * time.Second):
				}
				fmt.Fprintln(w, "second")
			}), worldOpts{h2: h2})
			resp, err := w.client(t, h2).Get("https://shop.example/stream")
			require.NoError(t, err)
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			require.NoError(t, err)
			assert.Equal(t, "first\n", line, "the first chunk arrives while the origin still holds the rest")
			close(gate)
			rest, err := io.ReadAll(br)
			require.NoError(t, err)
			assert.Equal(t, "second\n", string(rest))
		})
	}
}

func TestRequestBodyStreamsToTheOrigin(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("origin h2=%v", h2), func(t *testing.T) {
			gotFirst := make(chan struct{})
			w := newWorld(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				buf := make([]byte, 5)
				_, err := io.ReadFull(r.Body, buf)
				if err != nil || string(buf) != "ping1" {
					http.Error(w, "bad first chunk", 400)
					return
				}
				close(gotFirst)
				rest, _ := io.ReadAll(r.Body)
				fmt.Fprintf(w, "%s|%s", buf, rest)
			}), worldOpts{h2: h2})
			pr, pw := io.Pipe()
			go func() {
				_, _ = io.WriteString(pw, "ping1")
				select {
				case <-gotFirst:
					_, _ = io.WriteString(pw, "ping2")
					_ = pw.Close()
				case <-time.After(10 * time.Second):
					_ = pw.CloseWithError(fmt.Errorf("origin never saw the first chunk"))
				}
			}()
			resp, err := w.client(t, h2).Post("https://shop.example/up", "text/plain", pr)
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, "ping1|ping2", string(b), "the origin read the first chunk before the client sent the second")
		})
	}
}

// wsEcho answers an Upgrade: websocket request with 101 and echoes bytes.
func wsEcho(t testing.TB) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		_, _ = io.Copy(conn, brw)
	})
}

func TestWebSocketUpgradePassesThrough(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("origin h2=%v", h2), func(t *testing.T) {
			w := newWorld(t, wsEcho(t), worldOpts{h2: h2})
			req, err := http.NewRequest(http.MethodGet, "https://shop.example/ws", nil)
			require.NoError(t, err)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			// The Transport itself: http.Client's timeout wrapper hides the
			// upgraded connection.
			resp, err := w.client(t, false).Transport.RoundTrip(req)
			require.NoError(t, err)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			rwc, ok := resp.Body.(io.ReadWriteCloser)
			require.True(t, ok)
			defer rwc.Close()
			for _, msg := range []string{"hello", "again"} {
				_, err = io.WriteString(rwc, msg)
				require.NoError(t, err)
				buf := make([]byte, len(msg))
				_, err = io.ReadFull(rwc, buf)
				require.NoError(t, err)
				assert.Equal(t, msg, string(buf))
			}
			hellos := w.origin.Hellos()
			require.NotEmpty(t, hellos)
			assert.Equal(t, []string{"http/1.1"}, hellos[len(hellos)-1].ALPN, "a WebSocket connection offers http/1.1 only")
		})
	}
}

func TestStreamsThatAreNotTLSAreSpliced(t *testing.T) {
	w := newWorld(t, echo(), worldOpts{cfg: func(c *Config) { c.SniffTimeout = 200 * time.Millisecond }})
	t.Run("plain HTTP", func(t *testing.T) {
		c := connectThrough(t, w, "shop.example:443")
		_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		// The origin is HTTPS: its answer to plain HTTP proves the bytes
		// went through untouched.
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
	t.Run("silent client, server speaks first", func(t *testing.T) {
		c := connectThrough(t, w, "shop.example:443")
		// The origin waits for a ClientHello; after the sniff timeout the
		// stream is spliced and a TLS handshake straight to the origin works.
		time.Sleep(300 * time.Millisecond)
		tc := tls.Client(c, &tls.Config{ServerName: "shop.example", RootCAs: w.pki.pool})
		require.NoError(t, tc.Handshake())
		assert.Equal(t, "origin", tc.ConnectionState().PeerCertificates[0].Subject.CommonName)
	})
}

// connectThrough opens a CONNECT tunnel through the world's front end.
func connectThrough(t testing.TB, w *world, target string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", w.fe.ln.Addr().String(), 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	_, err = fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	require.NoError(t, err)
	// Read the reply byte by byte so nothing past it is consumed.
	var head []byte
	b := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		_, err := c.Read(b)
		require.NoError(t, err)
		head = append(head, b[0])
	}
	require.True(t, strings.HasPrefix(string(head), "HTTP/1.1 200"), string(head))
	return c
}

func TestScope(t *testing.T) {
	w := newWorld(t, echo(), worldOpts{cfg: func(c *Config) {
		c.Hosts = []string{"*.example", "/^localhost$/"}
		c.Skip = []string{"skip.example"}
	}})
	for _, tc := range []struct {
		target string
		proto  dial.Protocol
		want   bool
	}{
		{"shop.example:443", dial.ProtocolHTTPConnect, true},
		{"shop.example:8443", dial.ProtocolHTTPConnect, true},
		{"SHOP.EXAMPLE.:443", dial.ProtocolHTTPConnect, true},
		{"skip.example:443", dial.ProtocolHTTPConnect, false},
		{"localhost:443", dial.ProtocolHTTPConnect, true},
		{"example.org:443", dial.ProtocolHTTPConnect, false},
		{"shop.example:443", dial.ProtocolSOCKS5, true},
		{"shop.example:80", dial.ProtocolSOCKS5, false},
		{"shop.example:443", dial.ProtocolHTTPForward, false},
		{"garbage", dial.ProtocolHTTPConnect, false},
	} {
		got := w.ic.Intercept(&dial.Request{Target: tc.target, Protocol: tc.proto})
		assert.Equal(t, tc.want, got, "%s over %s", tc.target, tc.proto)
	}

	// Out of scope: the client sees the origin's own certificate.
	tr := &http.Transport{Proxy: http.ProxyURL(w.fe.URL()), TLSClientConfig: &tls.Config{RootCAs: w.pki.pool}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://skip.example/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "test origin CA", resp.TLS.PeerCertificates[0].Issuer.CommonName)
	// In scope: hopper's leaf, which that client does not trust.
	_, err = (&http.Client{Transport: tr}).Get("https://shop.example/")
	require.Error(t, err)
}

func TestUndecodableCodingIsDecodedForTheClient(t *testing.T) {
	w := newWorld(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			fmt.Fprint(w, "plain")
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		fmt.Fprint(zw, "compressed text")
		_ = zw.Close()
	}), worldOpts{h2: true})
	c := w.client(t, true)

	resp, body := get(t, c, "https://shop.example/")
	assert.Equal(t, "compressed text", body, "a client that accepts no coding gets the identity form")
	assert.Empty(t, resp.Header.Get("Content-Encoding"))

	resp, body = get(t, c, "https://shop.example/", "Accept-Encoding", "gzip")
	assert.Equal(t, "gzip", resp.Header.Get("Content-Encoding"), "a coding the client accepts passes through")
	zr, err := gzip.NewReader(strings.NewReader(body))
	require.NoError(t, err)
	plain, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Equal(t, "compressed text", string(plain))
}

func TestOriginHeadersReachTheClientUnchanged(t *testing.T) {
	w := newWorld(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil
		w.Header()["Content-Type"] = nil
		w.Header().Set("X-Origin", "yes")
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("<html>"))
	}), worldOpts{})
	resp, body := get(t, w.client(t, false), "https://shop.example/")
	assert.Equal(t, http.StatusTeapot, resp.StatusCode)
	assert.Equal(t, "<html>", body)
	assert.Equal(t, "yes", resp.Header.Get("X-Origin"))
	assert.Empty(t, resp.Header.Get("Content-Type"), "no sniffed Content-Type added")
	assert.Empty(t, resp.Header.Get("Date"), "no Date added")
}

// Trailers an origin sends after its body reach the client after the body.
// (Not to an HTTP/1.1 client from an HTTP/2 origin that also sends
// Content-Length, as Go's server does for a short body: the length goes on
// and leaves no room for trailers, as with httputil.ReverseProxy alone.)
func TestOriginTrailersReachTheClient(t *testing.T) {
	for _, tc := range []struct{ originH2, cliH2 bool }{{true, true}, {false, true}, {false, false}} {
		t.Run(fmt.Sprintf("origin h2=%v client h2=%v", tc.originH2, tc.cliH2), func(t *testing.T) {
			w := newWorld(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", "X-Checksum")
				_, _ = io.WriteString(w, "body")
				w.Header().Set("X-Checksum", "abc")
			}), worldOpts{h2: tc.originH2})
			resp, err := w.client(t, tc.cliH2).Get("https://shop.example/t")
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, "body", string(b))
			assert.Equal(t, "abc", resp.Trailer.Get("X-Checksum"))
		})
	}
}

// An origin that answers before reading the whole request body (here a 413
// after the first bytes) is heard: the client gets that answer while its
// body is still open, instead of hopper waiting on a body the origin no
// longer reads.
func TestEarlyAnswerWhileTheBodyIsStillComing(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("origin h2=%v", h2), func(t *testing.T) {
			w := newWorld(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// Go's HTTP/1.1 server would otherwise read the rest of the
				// body before answering; nginx and others answer at once.
				_ = http.NewResponseController(w).EnableFullDuplex()
				buf := make([]byte, 5)
				if _, err := io.ReadFull(r.Body, buf); err != nil {
					http.Error(w, "no first chunk", 400)
					return
				}
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				_, _ = io.WriteString(w, "too large")
				w.(http.Flusher).Flush()
			}), worldOpts{h2: h2})
			pr, pw := io.Pipe()
			answered := make(chan struct{})
			go func() {
				_, _ = io.WriteString(pw, "ping1")
				select {
				case <-answered:
					_ = pw.Close()
				case <-time.After(10 * time.Second):
					_ = pw.CloseWithError(fmt.Errorf("no answer while the body was open"))
				}
			}()
			resp, err := w.client(t, h2).Post("https://shop.example/up", "application/octet-stream", pr)
			close(answered)
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
			assert.Equal(t, "too large", string(b))
		})
	}
}
