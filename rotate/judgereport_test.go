package rotate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseJudgeReport(t *testing.T) {
	for name, tc := range map[string]struct {
		body    string
		ip      string
		headers http.Header // nil: headers unknown
	}{
		"hopper judge": {`{"ip":"203.0.113.7","headers":{"Via":["1.1 p"],"Accept":["*/*"]}}`, "203.0.113.7",
			http.Header{"Via": {"1.1 p"}, "Accept": {"*/*"}}},
		"httpbin": {`{"args":{},"headers":{"x-forwarded-for":"10.0.0.1","Host":"h"},"origin":"10.0.0.1, 203.0.113.7","url":"u"}`,
			"203.0.113.7", http.Header{"X-Forwarded-For": {"10.0.0.1"}, "Host": {"h"}}},
		"json ip only": {` {"ip":"::ffff:203.0.113.7"}`, "203.0.113.7", nil},
		"bare v4":      {"203.0.113.7\n", "203.0.113.7", nil},
		"bare v6":      {"2001:db8::7", "2001:db8::7", nil},
		"azenv html": {"<html><body><pre>\nREMOTE_ADDR = 203.0.113.7\nHTTP_HOST = judge.example\n" +
			"HTTP_X_FORWARDED_FOR = 10.0.0.1<br>\nHTTP_VIA = 1.1 proxy\nREQUEST_TIME = 1700000000\n</pre></body></html>",
			"203.0.113.7", http.Header{"Host": {"judge.example"}, "X-Forwarded-For": {"10.0.0.1"}, "Via": {"1.1 proxy"}}},
		"env plain, crlf": {"HTTP_USER_AGENT = curl\r\nREMOTE_ADDR = 203.0.113.7\r\n", "203.0.113.7",
			http.Header{"User-Agent": {"curl"}}},
		"env without headers": {"REMOTE_ADDR = 203.0.113.7", "203.0.113.7", nil},
	} {
		t.Run(name, func(t *testing.T) {
			rep, err := ParseJudgeReport([]byte(tc.body))
			require.NoError(t, err)
			assert.Equal(t, tc.ip, rep.IP)
			assert.Equal(t, tc.headers == nil, rep.HeadersUnknown)
			if tc.headers != nil {
				assert.Equal(t, tc.headers, rep.Headers)
			}
		})
	}
	for name, body := range map[string]string{
		"captive portal": "<html><body>Please log in to the network</body></html>",
		"empty":          "",
		"bad json":       `{"ip":`,
		"json no ip":     `{"headers":{}}`,
		"json bad ip":    `{"ip":"nope"}`,
		"bad header":     `{"ip":"203.0.113.7","headers":{"A":1}}`,
		"env bad addr":   "REMOTE_ADDR = nope",
		"lower-case env": "remote_addr = 203.0.113.7",
	} {
		_, err := ParseJudgeReport([]byte(body))
		assert.ErrorIs(t, err, ErrJudgeFormat, name)
	}
}

// A bare-address judge cannot see headers: an exit that is not us is of
// unknown anonymity, not elite.
func TestClassifyWithoutHeaders(t *testing.T) {
	self := []netip.Addr{netip.MustParseAddr("198.51.100.7")}
	assert.Equal(t, AnonymityUnknown, ClassifyAnonymity(JudgeReport{IP: "203.0.113.1", HeadersUnknown: true}, self))
	assert.Equal(t, AnonymityTransparent, ClassifyAnonymity(JudgeReport{IP: "198.51.100.7", HeadersUnknown: true}, self))
}

// judgeFormats serve what one request looked like in each judge format
// users point hopper at.
var judgeFormats = map[string]func(w http.ResponseWriter, r *http.Request, remote string){
	"httpbin": func(w http.ResponseWriter, r *http.Request, remote string) {
		h := map[string]string{"Host": r.Host}
		for k, v := range r.Header {
			h[k] = strings.Join(v, ", ")
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"args": map[string]string{}, "headers": h, "origin": remote, "url": "http://" + r.Host + "/get"})
	},
	"azenv": func(w http.ResponseWriter, r *http.Request, remote string) {
		w.Header().Set("Content-Type", "text/html")
		var names []string
		for k := range r.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		fmt.Fprintf(w, "<html><head><title>AZ Environment variables</title></head><body><pre>\n")
		fmt.Fprintf(w, "REMOTE_ADDR = %s\nREMOTE_PORT = 4711\nHTTP_HOST = %s\n", remote, r.Host)
		for _, k := range names {
			fmt.Fprintf(w, "HTTP_%s = %s\n", strings.ToUpper(strings.ReplaceAll(k, "-", "_")), strings.Join(r.Header[k], ", "))
		}
		fmt.Fprintf(w, "REQUEST_METHOD = GET\n</pre></body></html>\n")
	},
	"bare": func(w http.ResponseWriter, _ *http.Request, remote string) {
		fmt.Fprintln(w, remote)
	},
}

func startFormatJudge(t *testing.T, serve func(http.ResponseWriter, *http.Request, string)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		serve(w, r, host)
	})}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		assert.ErrorIs(t, <-done, http.ErrServerClosed)
	})
	return "http://" + ln.Addr().String() + "/"
}

// The prober judges through real upstream proxies with judges in every
// format: exit addresses always, anonymity as far as the format shows it.
func TestProberReadsEveryJudgeFormat(t *testing.T) {
	tr := startHTTPProxy(t, "127.0.0.141", proxyOpts{forwardHeaders: transparent})
	an := startHTTPProxy(t, "127.0.0.142", proxyOpts{forwardHeaders: anonymous})
	el := startHTTPProxy(t, "127.0.0.143", proxyOpts{})
	for format, serve := range judgeFormats {
		t.Run(format, func(t *testing.T) {
			p := newTestPool(t, Config{Clock: newFakeClock()}, "http://"+tr.addr, "http://"+an.addr, "http://"+el.addr, "direct")
			pr := newTestProber(t, p, ProberConfig{Judge: startFormatJudge(t, serve)})
			res := pr.ProbeAll(context.Background())
			require.Len(t, res, 4)
			want := []struct {
				exit string
				anon Anonymity
			}{
				{"127.0.0.141", AnonymityTransparent},
				{"127.0.0.142", AnonymityAnonymous},
				{"127.0.0.143", AnonymityElite},
				{"127.0.0.1", AnonymityTransparent},
			}
			for i, w := range want {
				require.NoError(t, res[i].Err, res[i].Upstream.Label())
				assert.Equal(t, w.exit, res[i].ExitIP.String(), res[i].Upstream.Label())
				if format == "bare" && w.exit != "127.0.0.1" {
					// A bare address shows no headers (not even
					// X-Forwarded-For): only "the exit is us" can be told.
					w.anon = AnonymityUnknown
				}
				assert.Equal(t, w.anon, res[i].Anonymity, "%s via %s", format, res[i].Upstream.Label())
			}
		})
	}
}

func FuzzParseJudgeReport(f *testing.F) {
	f.Add([]byte(`{"ip":"203.0.113.7","headers":{"Via":["1.1 p"]}}`))
	f.Add([]byte(`{"origin":"10.0.0.1, 203.0.113.7","headers":{"A":"b"}}`))
	f.Add([]byte("<pre>REMOTE_ADDR = 203.0.113.7\nHTTP_X_FORWARDED_FOR = 1.2.3.4</pre>"))
	f.Add([]byte("2001:db8::1\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		rep, err := ParseJudgeReport(body)
		if err != nil {
			if !errors.Is(err, ErrJudgeFormat) {
				t.Fatalf("error %v does not wrap ErrJudgeFormat", err)
			}
			return
		}
		ip, perr := netip.ParseAddr(rep.IP)
		if perr != nil || ip.Is4In6() {
			t.Fatalf("accepted report with address %q", rep.IP)
		}
		if rep.HeadersUnknown && len(rep.Headers) > 0 {
			t.Fatalf("headers unknown yet %d present", len(rep.Headers))
		}
		_ = ClassifyAnonymity(rep, nil)
	})
}
