package check

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hopper-proxy/hopper/rotate"
)

// maxDetail bounds the error text shown in a table cell.
const maxDetail = 120

// WriteTable writes the results as a table sorted by latency (working
// entries first), then the summary.
func WriteTable(w io.Writer, rep *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TTFB\tCONNECT\tRESULT\tANONYMITY\tEXIT\tUPSTREAM\tDETAIL")
	for _, r := range rep.Sorted() {
		anon, exit := "-", "-"
		if r.Anonymity != rotate.AnonymityUnknown {
			anon = r.Anonymity.String()
		}
		if r.ExitIP.IsValid() {
			exit = r.ExitIP.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", fmtDuration(r.TTFB), fmtDuration(r.Connect),
			r.Outcome, anon, exit, r.Upstream, truncate(oneLine(errText(r.Err)), maxDetail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return WriteSummary(w, rep)
}

// WriteSummary writes the summary: counts by result and anonymity, latency
// percentiles, and the judges.
func WriteSummary(w io.Writer, rep *Report) error {
	s := rep.Summary()
	var b strings.Builder
	fmt.Fprintf(&b, "checked %d of %d upstreams in %v", s.Checked, s.Total, rep.Elapsed.Round(time.Millisecond))
	if rep.Interrupted {
		b.WriteString(" (interrupted)")
	}
	b.WriteString("\nresults:   ")
	sep := ""
	for o := range numOutcomes {
		if n := s.ByOutcome[o]; n > 0 || o == OutcomeOK {
			fmt.Fprintf(&b, "%s%s %d", sep, o, n)
			sep = ", "
		}
	}
	if len(s.ByAnonymity) > 0 {
		b.WriteString("\nanonymity: ")
		sep = ""
		for _, a := range []rotate.Anonymity{rotate.AnonymityElite, rotate.AnonymityAnonymous, rotate.AnonymityTransparent} {
			fmt.Fprintf(&b, "%s%s %d", sep, a, s.ByAnonymity[a])
			sep = ", "
		}
	}
	for _, p := range []struct {
		name string
		p    Percentiles
	}{{"ttfb:      ", s.TTFB}, {"connect:   ", s.Connect}} {
		if p.p.N == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%smin %s, p50 %s, p90 %s, p99 %s, max %s", p.name, fmtDuration(p.p.Min),
			fmtDuration(p.p.P50), fmtDuration(p.p.P90), fmtDuration(p.p.P99), fmtDuration(p.p.Max))
	}
	for _, j := range rep.Judges {
		if j.Err != nil {
			fmt.Fprintf(&b, "\njudge %s: no answer directly (tried last): %s", j.URL, truncate(oneLine(j.Err.Error()), maxDetail))
		} else {
			fmt.Fprintf(&b, "\njudge %s: ok, sees this host as %s", j.URL, j.Self)
		}
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// jsonResult is one result in --format json and csv. Durations are
// milliseconds.
type jsonResult struct {
	Upstream    string  `json:"upstream"`
	Scheme      string  `json:"scheme"`
	Result      Outcome `json:"result"`
	Anonymity   string  `json:"anonymity"`
	ExitIP      string  `json:"exit_ip"`
	Judge       string  `json:"judge"`
	ConnectMS   float64 `json:"connect_ms"`
	TTFBMS      float64 `json:"ttfb_ms"`
	LatencyMS   float64 `json:"latency_ms"`
	SuccessRate float64 `json:"success_rate"`
	Score       float64 `json:"score"`
	Error       string  `json:"error"`
}

func toJSON(r Result) jsonResult {
	j := jsonResult{
		Upstream: r.Upstream, Scheme: r.Entry.Scheme.String(), Result: r.Outcome, Judge: r.Judge,
		ConnectMS: ms(r.Connect), TTFBMS: ms(r.TTFB), LatencyMS: ms(r.Latency()),
		SuccessRate: round3(r.Stats.SuccessRate), Score: round3(r.Score), Error: errText(r.Err),
	}
	if r.Anonymity != rotate.AnonymityUnknown {
		j.Anonymity = r.Anonymity.String()
	}
	if r.ExitIP.IsValid() {
		j.ExitIP = r.ExitIP.String()
	}
	return j
}

type jsonPercentiles struct {
	N   int     `json:"n"`
	Min float64 `json:"min"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func toJSONPercentiles(p Percentiles) jsonPercentiles {
	return jsonPercentiles{N: p.N, Min: ms(p.Min), P50: ms(p.P50), P90: ms(p.P90), P99: ms(p.P99), Max: ms(p.Max)}
}

type jsonJudge struct {
	URL       string  `json:"url"`
	OK        bool    `json:"ok"`
	Self      string  `json:"self,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

type jsonSummary struct {
	Total         int             `json:"total"`
	Checked       int             `json:"checked"`
	Interrupted   bool            `json:"interrupted"`
	ElapsedMS     float64         `json:"elapsed_ms"`
	Results       map[string]int  `json:"results"`
	Anonymity     map[string]int  `json:"anonymity"`
	TTFB          jsonPercentiles `json:"ttfb_ms"`
	Connect       jsonPercentiles `json:"connect_ms"`
	BestLatencyMS float64         `json:"best_latency_ms"`
}

type jsonReport struct {
	Summary jsonSummary  `json:"summary"`
	Judges  []jsonJudge  `json:"judges"`
	Results []jsonResult `json:"results"`
}

// WriteJSON writes the report as one JSON object: "summary", "judges" and
// "results" (sorted as in the table). latency_ms, success_rate and score are
// the upstream's figures as rotate's least-latency and weighted policies read
// them (rotate.Stats, rotate.Stats.Score).
func WriteJSON(w io.Writer, rep *Report) error {
	s := rep.Summary()
	out := jsonReport{
		Summary: jsonSummary{
			Total: s.Total, Checked: s.Checked, Interrupted: rep.Interrupted, ElapsedMS: ms(rep.Elapsed),
			Results: map[string]int{}, Anonymity: map[string]int{},
			TTFB: toJSONPercentiles(s.TTFB), Connect: toJSONPercentiles(s.Connect), BestLatencyMS: ms(rep.Best),
		},
		Judges:  []jsonJudge{},
		Results: []jsonResult{},
	}
	for o, n := range s.ByOutcome {
		out.Summary.Results[o.String()] = n
	}
	for a, n := range s.ByAnonymity {
		out.Summary.Anonymity[a.String()] = n
	}
	for _, j := range rep.Judges {
		jj := jsonJudge{URL: j.URL, OK: j.Err == nil, LatencyMS: ms(j.Latency), Error: errText(j.Err)}
		if j.Self.IsValid() {
			jj.Self = j.Self.String()
		}
		out.Judges = append(out.Judges, jj)
	}
	for _, r := range rep.Sorted() {
		out.Results = append(out.Results, toJSON(r))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// CSVHeader is the first row WriteCSV writes.
var CSVHeader = []string{"upstream", "scheme", "result", "anonymity", "exit_ip", "judge",
	"connect_ms", "ttfb_ms", "latency_ms", "success_rate", "score", "error"}

// WriteCSV writes one row per result (sorted as in the table) under
// CSVHeader; fields as in WriteJSON.
func WriteCSV(w io.Writer, rep *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, r := range rep.Sorted() {
		j := toJSON(r)
		row := []string{j.Upstream, j.Scheme, j.Result.String(), j.Anonymity, j.ExitIP, j.Judge,
			f(j.ConnectMS), f(j.TTFBMS), f(j.LatencyMS), f(j.SuccessRate), f(j.Score), oneLine(j.Error)}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteList writes the OK entries, fastest first, in the list format
// `hopper serve --upstreams` reads, each followed by a comment with its
// figures. The entries carry their credentials: write the list where only
// its owner can read it.
func WriteList(w io.Writer, rep *Report) error {
	good := rep.Good()
	var b strings.Builder
	fmt.Fprintf(&b, "# hopper check: %d good of %d checked\n", len(good), len(rep.Results))
	for _, r := range good {
		b.WriteString(r.Entry.String())
		b.WriteString("  # ")
		b.WriteString(fmtDuration(r.speed()))
		if r.Anonymity != rotate.AnonymityUnknown {
			b.WriteString(" " + r.Anonymity.String())
		}
		if r.ExitIP.IsValid() {
			b.WriteString(" exit " + r.ExitIP.String())
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtDuration renders a duration for people: "-" for none, milliseconds
// below a second (two decimals below one).
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	default:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	}
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// oneLine keeps text on one line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
}
