package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"golang.org/x/net/proxy"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/rotate"
	"github.com/hopper-proxy/hopper/socks"
	"github.com/hopper-proxy/hopper/tunnel"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis (through rotate) starts a process-wide clock goroutine
		// from its package init; it is not ours to stop.
		goleak.IgnoreTopFunction("github.com/redis/go-redis/v9/internal/pool.startGlobalTimeCache.func1"),
	)
}

// testTimeout bounds every wait, so a failure never hangs the run.
const testTimeout = 10 * time.Second

// world is client → hopper (tunnel + socks on one port) → direct egress or a
// rotate.Router → origin, with the admin server beside it, all on loopback.
type world struct {
	t       *testing.T
	origin  string // host:port of the origin
	router  *rotate.Router
	metrics *Metrics
	watched *ServingListener
	proxy   string // host:port of hopper
	admin   string // http://host:port of the admin server
	srv     *Server
	client  *http.Client // talks to the admin server
}

type worldOpts struct {
	// upstreams, if set, routes through a rotate.Router over these list
	// entries; else hopper egresses directly.
	upstreams []string
	auth      dial.Authenticator
}

func startWorld(t *testing.T, o worldOpts) *world {
	t.Helper()
	log := zaptest.NewLogger(t)
	w := &world{t: t, origin: startOrigin(t)}
	var dialer dial.Dialer = &dial.Direct{}
	var src UpstreamSource
	if len(o.upstreams) > 0 {
		list := filepath.Join(t.TempDir(), "upstreams.txt")
		require.NoError(t, os.WriteFile(list, []byte(strings.Join(o.upstreams, "\n")+"\n"), 0o600))
		r, err := rotate.NewRouter(rotate.RouterConfig{
			Pools:  map[string]rotate.PoolSpec{rotate.DefaultPoolName: {Upstreams: []string{list}}},
			Pool:   rotate.Config{FailuresUntilQuarantine: 1, Retries: 1, Logger: log},
			Prober: rotate.ProberConfig{Interval: -1},
		})
		require.NoError(t, err)
		require.NoError(t, r.Reload(context.Background()))
		t.Cleanup(func() { _ = r.Close() })
		w.router, dialer, src = r, r, r
	}
	w.metrics = NewMetrics(MetricsConfig{Upstreams: src})

	ss, err := socks.New(socks.Config{Dialer: dialer, Logger: log, Observer: w.metrics})
	require.NoError(t, err)
	ts, err := tunnel.New(tunnel.Config{Dialer: dialer, SOCKS: ss, Logger: log, Observer: w.metrics})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	w.watched = WatchListener(ln)
	w.proxy = ln.Addr().String()
	tunErr := make(chan error, 1)
	go func() { tunErr <- ts.Serve(context.Background(), w.watched) }()

	w.srv, err = New(Config{Metrics: w.metrics, ProxyAddr: w.proxy, Serving: w.watched.Serving, Auth: o.auth, Logger: log})
	require.NoError(t, err)
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	w.admin = "http://" + aln.Addr().String()
	admErr := make(chan error, 1)
	go func() { admErr <- w.srv.Serve(context.Background(), aln) }()
	w.client = &http.Client{Timeout: testTimeout, Transport: &http.Transport{}}

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		w.client.CloseIdleConnections()
		require.NoError(t, w.srv.Shutdown(ctx))
		require.NoError(t, <-admErr)
		require.NoError(t, ts.Shutdown(ctx))
		require.NoError(t, <-tunErr)
	})
	// Wait until the proxy's accept loop runs, so /healthz sees it served.
	require.Eventually(t, func() bool { return w.watched.Serving() == nil }, testTimeout, time.Millisecond)
	return w
}

// startOrigin serves GET /bytes/N with an N-byte body of 'x'.
func startOrigin(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n < 0 || n > 1<<24 {
			http.Error(w, "bad size", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = io.CopyN(w, zeroReader{}, int64(n))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: testTimeout}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close(); <-done })
	return ln.Addr().String()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// fetch GETs url with c and returns the status and body length.
func fetch(t *testing.T, c *http.Client, url string) (int, int) {
	t.Helper()
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, int(n)
}

// httpProxyClient sends plain-HTTP requests through hopper as a forward
// proxy; connect makes it tunnel each request with CONNECT instead.
func (w *world) httpProxyClient(connect bool) *http.Client {
	pu := &url.URL{Scheme: "http", Host: w.proxy}
	tr := &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}
	if connect {
		// A CONNECT tunnel for a plain-HTTP origin: dial the proxy and
		// ask for the tunnel ourselves.
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialConnect(ctx, w.proxy, addr)
		}
	}
	w.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// socksClient sends requests through hopper as a SOCKS5 proxy.
func (w *world) socksClient() *http.Client {
	d, err := proxy.SOCKS5("tcp", w.proxy, nil, proxy.Direct)
	require.NoError(w.t, err)
	cd := d.(proxy.ContextDialer)
	tr := &http.Transport{DialContext: cd.DialContext, DisableKeepAlives: true}
	w.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// dialConnect opens a CONNECT tunnel to target through the proxy.
func dialConnect(ctx context.Context, proxyAddr, target string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		c.Close()
		return nil, err
	}
	// Read the reply head byte by byte so no tunnel byte is consumed.
	var head []byte
	buf := make([]byte, 1)
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		if _, err := c.Read(buf); err != nil {
			c.Close()
			return nil, err
		}
		head = append(head, buf[0])
	}
	if !strings.HasPrefix(string(head), "HTTP/1.1 200") {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: %s", target, strings.SplitN(string(head), "\r\n", 2)[0])
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// get GETs an admin path and returns status and body.
func (w *world) get(path string) (int, string) {
	w.t.Helper()
	resp, err := w.client.Get(w.admin + path)
	require.NoError(w.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(w.t, err)
	return resp.StatusCode, string(body)
}

// getJSON GETs an admin path and decodes its JSON body into v.
func (w *world) getJSON(path string, v any) {
	w.t.Helper()
	code, body := w.get(path)
	require.Equal(w.t, http.StatusOK, code, body)
	require.NoError(w.t, json.Unmarshal([]byte(body), v), body)
}

// scrape fetches /metrics and parses the exposition text.
func (w *world) scrape() metricSet {
	w.t.Helper()
	code, body := w.get("/metrics")
	require.Equal(w.t, http.StatusOK, code)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(w.t, err)
	return metricSet(fams)
}

// metricSet is a parsed scrape.
type metricSet map[string]*dto.MetricFamily

// get sums the values of the series of name whose labels include want (a
// counter's or gauge's value, a histogram's sample count); 0 if none.
func (s metricSet) get(name string, want ...string) float64 {
	fam, ok := s[name]
	if !ok {
		return 0
	}
	sum := 0.0
next:
	for _, m := range fam.GetMetric() {
		have := make(map[string]string)
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// has reports whether a series of name with labels want exists.
func (s metricSet) has(name string, want ...string) bool {
	fam, ok := s[name]
	if !ok {
		return false
	}
next:
	for _, m := range fam.GetMetric() {
		have := make(map[string]string)
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue next
			}
		}
		return true
	}
	return false
}

// waitMetric scrapes until name{want} reaches v and returns that scrape:
// a tunnel is counted a moment after its client saw the last byte.
func (w *world) waitMetric(v float64, name string, want ...string) metricSet {
	w.t.Helper()
	var last metricSet
	require.Eventually(w.t, func() bool {
		last = w.scrape()
		return last.get(name, want...) == v
	}, testTimeout, 5*time.Millisecond, "%s%v never reached %v", name, want, v)
	return last
}

// settled waits until no tunnel is active, then scrapes afresh. A scrape
// gathers each family at its own instant, and Metrics.TunnelClosed drops
// the active gauge after everything else it counts, so only a scrape begun
// after the gauge was seen at zero shows every finished tunnel in every
// family.
func (w *world) settled() metricSet {
	w.t.Helper()
	w.waitMetric(0, "hopper_tunnels_active")
	return w.scrape()
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	return testnet.RefusingAddr(t, "127.0.0.1")
}

// recorded is a response from the Server's handler, without a listener.
type recorded struct {
	code   int
	body   string
	header http.Header
}

func serve(s *Server, path string) recorded { return serveMethod(s, http.MethodGet, path) }

func serveMethod(s *Server, method, path string) recorded {
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return recorded{code: rec.Code, body: rec.Body.String(), header: rec.Header()}
}
