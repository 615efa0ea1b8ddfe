package mitm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// h2cServer is Go's HTTP/2 server (net/http's, which is x/net's bundled)
// speaking HTTP/2 with prior knowledge on loopback TCP, as it does after
// ALPN chose h2.
func h2cServer(t testing.TB, h http.Handler, maxStreams int) (*http.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, HTTP2: &http.HTTP2Config{MaxConcurrentStreams: maxStreams}, Protocols: new(http.Protocols)}
	srv.Protocols.SetUnencryptedHTTP2(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return srv, ln.Addr().String()
}

// h2cPair starts Go's HTTP/2 server with h and returns hopper's client
// connection to it, made with p.
func h2cPair(t *testing.T, h http.Handler, maxStreams int, p *Profile) *h2Conn {
	t.Helper()
	_, addr := h2cServer(t, h, maxStreams)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	oc, err := newH2Client(time.Minute).NewConn(c, p)
	require.NoError(t, err)
	cc := oc.(*h2Conn)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func newReq(t testing.TB, ctx context.Context, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	require.NoError(t, err)
	return req
}

func readBody(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return b
}

func TestH2ClientAgainstGoServer(t *testing.T) {
	firefox := profile(t, "firefox")                       // a small stream window: 128 KiB
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	var inflight, peak atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		switch r.URL.Path {
		case "/big":
			_, _ = w.Write(big)
		case "/upload":
			sum := sha256.New()
			n, err := io.Copy(sum, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			w.Header().Set("Trailer", "X-Sum")
			w.Header().Set("X-Request-Trailer", r.Trailer.Get("X-Client-Sum"))
			fmt.Fprintf(w, "%d", n)
			w.Header().Set("X-Sum", fmt.Sprintf("%x", sum.Sum(nil)))
		case "/slow":
			time.Sleep(50 * time.Millisecond)
			fmt.Fprintf(w, "%s %s %s", r.Proto, r.Method, r.Host)
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			_, _ = io.WriteString(w, "after hints")
		case "/headers":
			fmt.Fprintf(w, "%s|%s|%s", r.Header.Get("User-Agent"), r.Header.Get("Te"), r.Header.Get("Cookie"))
		}
	})
	cc := h2cPair(t, h, 4, firefox)
	ctx := context.Background()

	t.Run("headers", func(t *testing.T) {
		req := newReq(t, ctx, http.MethodGet, "https://shop.example/headers", nil)
		req.Header.Set("User-Agent", "ua")
		req.Header.Set("Te", "trailers")
		req.Header.Set("Cookie", "a=b")
		req.Header.Set("Connection", "keep-alive") // forbidden over HTTP/2: dropped
		resp, err := cc.RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, "ua|trailers|a=b", string(readBody(t, resp)))
		assert.Equal(t, "HTTP/2.0", resp.Proto)
	})

	t.Run("large response through flow control", func(t *testing.T) {
		resp, err := cc.RoundTrip(newReq(t, ctx, http.MethodGet, "https://shop.example/big", nil))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		got := readBody(t, resp)
		assert.Equal(t, len(big), len(got))
		assert.True(t, bytes.Equal(big, got))
	})

	t.Run("large request body and trailers both ways", func(t *testing.T) {
		pr, pw := io.Pipe()
		req := newReq(t, ctx, http.MethodPost, "https://shop.example/upload", pr)
		req.Trailer = http.Header{"X-Client-Sum": nil}
		go func() {
			for i := 0; i < 16; i++ {
				_, _ = pw.Write(big[:len(big)/16])
			}
			req.Trailer.Set("X-Client-Sum", "s") // set before EOF, as net/http requires
			_ = pw.Close()
		}()
		resp, err := cc.RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprint(len(big)), string(readBody(t, resp)))
		sum := sha256.Sum256(big)
		assert.Equal(t, fmt.Sprintf("%x", sum[:]), resp.Trailer.Get("X-Sum"))
		assert.Equal(t, "s", resp.Header.Get("X-Request-Trailer"), "the origin got the request's trailer")
	})

	t.Run("concurrent streams within the origin's limit", func(t *testing.T) {
		peak.Store(0)
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := cc.RoundTrip(newReq(t, ctx, http.MethodGet, "https://shop.example/slow", nil))
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && string(b) != "HTTP/2.0 GET shop.example" {
					err = fmt.Errorf("body %q", b)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		assert.LessOrEqual(t, peak.Load(), int32(4), "never more streams than MAX_CONCURRENT_STREAMS")
		assert.Greater(t, peak.Load(), int32(1), "streams ran concurrently")
	})

	t.Run("1xx responses reach the trace", func(t *testing.T) {
		var got []int
		var link string
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got = append(got, code)
			link = h.Get("Link")
			return nil
		}}
		req := newReq(t, httptrace.WithClientTrace(ctx, trace), http.MethodGet, "https://shop.example/hints", nil)
		resp, err := cc.RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, "after hints", string(readBody(t, resp)))
		assert.Equal(t, []int{103}, got)
		assert.Equal(t, "</a.css>; rel=preload", link)
	})

	t.Run("closing a body early resets only its stream", func(t *testing.T) {
		resp, err := cc.RoundTrip(newReq(t, ctx, http.MethodGet, "https://shop.example/big", nil))
		require.NoError(t, err)
		_, err = io.ReadFull(resp.Body, make([]byte, 1000))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		_, err = resp.Body.Read(make([]byte, 1))
		assert.ErrorIs(t, err, errH2BodyGone)
		resp, err = cc.RoundTrip(newReq(t, ctx, http.MethodGet, "https://shop.example/slow", nil))
		require.NoError(t, err, "the connection still works")
		assert.Equal(t, "HTTP/2.0 GET shop.example", string(readBody(t, resp)))
		assert.True(t, cc.CanTakeRequest())
	})

	t.Run("cancelling the context resets the stream", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		resp, err := cc.RoundTrip(newReq(t, cctx, http.MethodGet, "https://shop.example/big", nil))
		require.NoError(t, err)
		cancel()
		_, err = io.ReadAll(resp.Body)
		assert.ErrorIs(t, err, context.Canceled)
		resp.Body.Close()
	})
}

func TestH2ClientGoAwayFromGoServer(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "finished")
	})
	hs, addr := h2cServer(t, h, 100)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	oc, err := newH2Client(time.Minute).NewConn(c, profile(t, "chrome"))
	require.NoError(t, err)
	defer oc.Close()

	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := oc.RoundTrip(newReq(t, context.Background(), http.MethodGet, "https://shop.example/", nil))
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{string(b), err}
	}()
	<-started
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- hs.Shutdown(sctx) }() // graceful: GOAWAY, then wait
	require.Eventually(t, func() bool { return !oc.CanTakeRequest() }, 5*time.Second, 5*time.Millisecond, "GOAWAY stops new streams")
	_, err = oc.RoundTrip(newReq(t, context.Background(), http.MethodGet, "https://shop.example/", nil))
	assert.ErrorIs(t, err, errH2Retryable, "a request after GOAWAY may go elsewhere")
	close(release)
	r := <-res
	require.NoError(t, r.err)
	assert.Equal(t, "finished", r.body, "the stream in flight completes")
	require.NoError(t, <-shut)
}

// BenchmarkH2RoundTrip compares hopper's HTTP/2 client with net/http's on
// one connection to the same server, 16 requests in flight, 4 KiB bodies.
func BenchmarkH2RoundTrip(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 4<<10)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) })
	_, addr := h2cServer(b, h, 100)
	run := func(b *testing.B, rt http.RoundTripper) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		b.SetParallelism(8) // 16 in flight on 2 cores
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
				resp, err := rt.RoundTrip(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	b.Run("hopper", func(b *testing.B) {
		c, err := net.Dial("tcp", addr)
		require.NoError(b, err)
		p := *profile(b, "chrome")
		p.HTTP2.FirstStreamID = 1
		oc, err := newH2Client(time.Minute).NewConn(c, &p)
		require.NoError(b, err)
		defer oc.Close()
		run(b, roundTripperFunc(oc.RoundTrip))
	})
	b.Run("net-http", func(b *testing.B) {
		tr := &http.Transport{Protocols: new(http.Protocols), MaxConnsPerHost: 1}
		tr.Protocols.SetUnencryptedHTTP2(true)
		defer tr.CloseIdleConnections()
		run(b, tr)
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
