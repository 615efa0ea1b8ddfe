package check

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/rotate"
)

// expect is what the check of one entry must find.
type expect struct {
	outcome Outcome
	exit    string // egress address, for working entries
	anon    rotate.Anonymity
}

// world builds loopback upstreams and the list lines naming them, each with
// the outcome its check must have.
type world struct {
	t      *testing.T
	next   int // last octet of the next egress address
	want   map[rotate.Entry]expect
	egress map[rotate.Entry]string
}

func newWorld(t *testing.T) *world {
	return &world{t: t, next: 10, want: make(map[rotate.Entry]expect), egress: make(map[rotate.Entry]string)}
}

// add starts a proxy per spec (a fresh egress address unless set), and
// returns the list line line(addr) names it with; entry is how that line
// parses in its source.
func (w *world) add(spec proxySpec, o Outcome, anon rotate.Anonymity, line func(addr string) string, entry func(line string) string) string {
	w.t.Helper()
	if spec.egress == "" {
		spec.egress = fmt.Sprintf("127.0.0.%d", w.next)
		w.next++
	}
	addr := startProxy(w.t, spec)
	l := line(addr)
	canon := l
	if entry != nil {
		canon = entry(l)
	}
	e, err := rotate.ParseEntry(canon)
	require.NoError(w.t, err, canon)
	ex := expect{outcome: o}
	if o.Working() {
		ex.exit, ex.anon = spec.egress, anon
	}
	w.want[e] = ex
	return l
}

// addRefused names a closed port.
func (w *world) addRefused(line string) string {
	w.t.Helper()
	e, err := rotate.ParseEntry(line)
	require.NoError(w.t, err)
	w.want[e] = expect{outcome: OutcomeRefused}
	return line
}

func format(f string) func(string) string {
	return func(addr string) string { return fmt.Sprintf(f, addr) }
}

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return h, p
}

// TestCheckFiftyMixedUpstreams checks 50 loopback upstreams of every kind
// through a real judge, the first judge dead, from four sources of three
// formats, and reads the report back in every output format.
func TestCheckFiftyMixedUpstreams(t *testing.T) {
	live := startJudge(t)
	dead := "http://" + closedPort(t) + "/"
	trusted, roots := selfSigned(t)
	untrusted, _ := selfSigned(t)
	w := newWorld(t)
	var list, socksList, more []string
	var jsonItems []map[string]any

	// HTTP, CONNECT and forward, in every line form.
	for i := range 7 {
		forms := []string{"http://%s", "%s", "http://%s/"}
		list = append(list, w.add(proxySpec{}, OutcomeOK, rotate.AnonymityElite, format(forms[i%3]), nil))
	}
	for range 5 {
		more = append(more, w.add(proxySpec{headers: headersVia}, OutcomeOK, rotate.AnonymityAnonymous, format("http://%s"), nil))
	}
	for range 5 {
		more = append(more, w.add(proxySpec{headers: headersTransparent}, OutcomeOK, rotate.AnonymityTransparent, format("%s"), nil))
	}
	// SOCKS5 without a scheme, in a list named socks5.txt.
	for range 7 {
		socksList = append(socksList, w.add(proxySpec{kind: kindSOCKS5}, OutcomeOK, rotate.AnonymityElite, format("%s"),
			func(l string) string { return "socks5://" + l }))
	}
	// Authentication: right, wrong and missing credentials.
	auth := proxySpec{user: "alice", pass: "s3cr#t"}
	for _, f := range []string{"http://alice:s3cr%%23t@%s", "%s:alice:s3cr#t", "alice:s3cr#t@%s"} {
		list = append(list, w.add(auth, OutcomeOK, rotate.AnonymityElite, format(f), nil))
	}
	for range 3 {
		list = append(list, w.add(auth, OutcomeAuth, 0, format("http://alice:wrong@%s"), nil))
	}
	list = append(list, w.add(auth, OutcomeAuth, 0, format("http://%s"), nil))
	sauth := proxySpec{kind: kindSOCKS5, user: "bob", pass: "pw"}
	for _, c := range []struct {
		pass string
		o    Outcome
	}{{"pw", OutcomeOK}, {"pw", OutcomeOK}, {"pw", OutcomeOK}, {"nope", OutcomeAuth}, {"nope", OutcomeAuth}} {
		var item map[string]any
		w.add(sauth, c.o, rotate.AnonymityElite, func(addr string) string {
			h, p := hostPort(t, addr)
			item = map[string]any{"ip": h, "port": json.Number(p), "protocol": "socks5", "username": "bob", "password": c.pass}
			return "socks5://bob:" + c.pass + "@" + addr
		}, nil)
		jsonItems = append(jsonItems, item)
	}
	w.add(proxySpec{kind: kindSOCKS5, user: "bob", pass: "pw"}, OutcomeAuth, 0, func(addr string) string {
		h, p := hostPort(t, addr)
		jsonItems = append(jsonItems, map[string]any{"host": h, "port": p, "type": "SOCKS5"})
		return "socks5://" + addr
	}, nil)
	// Refused, blackholed, TLS, garbage.
	for range 3 {
		list = append(list, w.addRefused("http://"+closedPort(t)))
	}
	for range 2 {
		addr := closedPort(t)
		w.addRefused("socks5://" + addr)
		h, p := hostPort(t, addr)
		jsonItems = append(jsonItems, map[string]any{"ip": h, "port": json.Number(p), "protocols": []string{"socks4", "socks5"}})
	}
	for range 2 {
		list = append(list, w.add(proxySpec{blackhole: true}, OutcomeTimeout, 0, format("http://%s"), nil))
		more = append(more, w.add(proxySpec{kind: kindSOCKS5, blackhole: true}, OutcomeTimeout, 0, format("socks5://%s"), nil))
	}
	list = append(list, w.add(proxySpec{cert: &trusted}, OutcomeOK, rotate.AnonymityElite, format("https://%s"), nil))
	list = append(list, w.add(proxySpec{cert: &untrusted}, OutcomeTLS, 0, format("https://%s"), nil))
	list = append(list, w.add(proxySpec{garbage: true}, OutcomeBadReply, 0, format("http://%s"), nil))
	more = append(more, w.add(proxySpec{kind: kindSOCKS5, garbage: true}, OutcomeBadReply, 0, format("socks5h://%s"), nil))
	require.Len(t, w.want, 50)

	// Sources: duplicates across them, a bad line and an unsupported item.
	dir := t.TempDir()
	listPath := filepath.Join(dir, "list.txt")
	socksPath := filepath.Join(dir, "socks5.txt")
	jsonPath := filepath.Join(dir, "proxies.json")
	listText := "# mixed upstreams\n" + strings.Join(list, "\n") + "\nnot a proxy at all\n" + list[0] + "   # again\n"
	require.NoError(t, os.WriteFile(listPath, []byte(listText), 0o600))
	require.NoError(t, os.WriteFile(socksPath, []byte(strings.Join(socksList, "\r\n")+"\r\n"), 0o600))
	jsonItems = append(jsonItems, map[string]any{"ip": "127.0.0.1", "port": 1080, "protocol": "ftp"})
	js, err := json.Marshal(map[string]any{"proxies": jsonItems})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(jsonPath, js, 0o600))
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(rw, strings.Join(append(more, list[1], "socks5://"+socksList[0]), "\n"))
	}))
	defer srv.Close()

	ctx := context.Background()
	loaded := Load(ctx, []string{listPath, socksPath, jsonPath, srv.URL + "/more.txt?key=secret"}, LoadOptions{})
	require.Len(t, loaded.Entries, 50)
	assert.Equal(t, 3, loaded.Duplicates)
	require.Len(t, loaded.Problems, 2, "%v", loaded.Problems)
	var le *rotate.LineError
	require.ErrorAs(t, loaded.Problems[0], &le)
	assert.Equal(t, listPath, le.File)
	assert.Equal(t, len(list)+2, le.Line)
	assert.ErrorIs(t, loaded.Problems[1], ErrUnsupportedProtocol)
	for _, e := range loaded.Entries {
		assert.Contains(t, w.want, e, e.Redacted())
	}

	cfg := Config{Judges: []string{dead, live}, Timeout: 3 * time.Second, TLS: &tls.Config{RootCAs: roots},
		Logger: zaptest.NewLogger(t)}
	c, err := New(cfg)
	require.NoError(t, err)
	var progressed bytes.Buffer
	prog := NewProgress(&progressed, len(loaded.Entries), false)
	start := time.Now()
	rep, err := c.Run(ctx, loaded.Entries, prog.Add)
	require.NoError(t, err)
	require.Less(t, time.Since(start), 3*cfg.Budget(50), "hang check")
	prog.Finish()
	assert.Equal(t, 50, strings.Count(progressed.String(), "\n"))

	require.Len(t, rep.Judges, 2)
	assert.Error(t, rep.Judges[0].Err)
	require.NoError(t, rep.Judges[1].Err)
	assert.Equal(t, "127.0.0.1", rep.Judges[1].Self.String())
	liveLabel := rotate.SourceLabel(live)

	require.Len(t, rep.Results, 50)
	for _, r := range rep.Results {
		want := w.want[r.Entry]
		if !assert.Equal(t, want.outcome, r.Outcome, "%s: %v", r.Upstream, r.Err) {
			continue
		}
		if !want.outcome.Working() {
			assert.Error(t, r.Err, r.Upstream)
			assert.Zero(t, r.Score, r.Upstream)
			assert.NotContains(t, r.Err.Error(), "s3cr", "errors never carry passwords")
			continue
		}
		assert.NoError(t, r.Err)
		assert.Equal(t, want.exit, r.ExitIP.String(), r.Upstream)
		assert.Equal(t, want.anon, r.Anonymity, r.Upstream)
		assert.Equal(t, liveLabel, r.Judge, r.Upstream)
		assert.Positive(t, r.Connect, r.Upstream)
		assert.Positive(t, r.TTFB, r.Upstream)
		assert.Equal(t, r.Stats.Score(rep.Best), r.Score, r.Upstream)
		assert.Equal(t, 1.0, r.Stats.SuccessRate, r.Upstream)
	}

	s := rep.Summary()
	assert.Equal(t, map[Outcome]int{OutcomeOK: 31, OutcomeFiltered: 0, OutcomeRefused: 5, OutcomeAuth: 7,
		OutcomeTimeout: 4, OutcomeTLS: 1, OutcomeBadReply: 2, OutcomeUnreachable: 0, OutcomeFailed: 0}, s.ByOutcome)
	assert.Equal(t, map[rotate.Anonymity]int{rotate.AnonymityElite: 21, rotate.AnonymityAnonymous: 5,
		rotate.AnonymityTransparent: 5}, s.ByAnonymity)
	assert.Equal(t, 31, s.TTFB.N)
	assert.LessOrEqual(t, s.TTFB.Min, s.TTFB.P50)
	assert.LessOrEqual(t, s.TTFB.P50, s.TTFB.P90)
	assert.LessOrEqual(t, s.TTFB.P99, s.TTFB.Max)

	checkOutputs(t, rep, w)
}

// checkOutputs reads the report back in every format.
func checkOutputs(t *testing.T, rep *Report, w *world) {
	var table bytes.Buffer
	require.NoError(t, WriteTable(&table, rep))
	assert.Contains(t, table.String(), "TTFB")
	assert.Contains(t, table.String(), "results:   ok 31, refused 5, auth 7, timeout 4, tls 1, bad-reply 2")
	assert.Contains(t, table.String(), "anonymity: elite 21, anonymous 5, transparent 5")
	assert.NotContains(t, table.String(), "s3cr")

	var js bytes.Buffer
	require.NoError(t, WriteJSON(&js, rep))
	var doc struct {
		Summary struct {
			Results map[string]int `json:"results"`
		} `json:"summary"`
		Judges  []map[string]any `json:"judges"`
		Results []struct {
			Upstream string  `json:"upstream"`
			Result   string  `json:"result"`
			TTFB     float64 `json:"ttfb_ms"`
			Score    float64 `json:"score"`
		} `json:"results"`
	}
	require.NoError(t, json.Unmarshal(js.Bytes(), &doc))
	assert.Equal(t, 31, doc.Summary.Results["ok"])
	require.Len(t, doc.Results, 50)
	require.Len(t, doc.Judges, 2)
	byLabel := map[string]Result{}
	for _, r := range rep.Results {
		byLabel[r.Upstream] = r
	}
	for i, r := range doc.Results {
		res, ok := byLabel[r.Upstream]
		require.True(t, ok, r.Upstream)
		assert.Equal(t, res.Outcome.String(), r.Result)
		assert.InDelta(t, res.Score, r.Score, 0.001)
		if i > 0 && r.Result == "ok" && doc.Results[i-1].Result == "ok" {
			assert.LessOrEqual(t, doc.Results[i-1].TTFB, r.TTFB, "sorted by latency")
		}
	}
	assert.NotContains(t, js.String(), "s3cr")

	var cs bytes.Buffer
	require.NoError(t, WriteCSV(&cs, rep))
	rows, err := csv.NewReader(&cs).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 51)
	assert.Equal(t, CSVHeader, rows[0])
	assert.Equal(t, "ok", rows[1][2])

	var out bytes.Buffer
	require.NoError(t, WriteList(&out, rep))
	ups, errs := rotate.ParseList("good.txt", &out)
	require.Empty(t, errs)
	require.Len(t, ups, 31)
	for _, u := range ups {
		assert.Equal(t, OutcomeOK, w.want[u.Entry()].outcome, u.Label())
	}
}
