package check

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/rotate"
)

func TestPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(ds)
	assert.Equal(t, Percentiles{N: 100, Min: time.Millisecond, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond,
		P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}, p)
	assert.Equal(t, Percentiles{N: 1, Min: 7, P50: 7, P90: 7, P99: 7, Max: 7}, percentiles([]time.Duration{7}))
	assert.Equal(t, Percentiles{}, percentiles(nil))
}

func TestFmtDuration(t *testing.T) {
	assert.Equal(t, "-", fmtDuration(0))
	assert.Equal(t, "1.5ms", fmtDuration(1500*time.Microsecond))
	assert.Equal(t, "0.05ms", fmtDuration(47*time.Microsecond))
	assert.Equal(t, "2.25s", fmtDuration(2250*time.Millisecond))
}

// sampleReport is a small report with one result of each kind.
func sampleReport(t *testing.T) *Report {
	entry := func(s string) rotate.Entry {
		e, err := rotate.ParseEntry(s)
		require.NoError(t, err)
		return e
	}
	return &Report{
		Total: 4,
		Results: []Result{
			{Entry: entry("http://u:pw@10.0.0.1:80"), Upstream: "http://u:***@10.0.0.1:80", Outcome: OutcomeTimeout, Err: errors.New("slow")},
			{Entry: entry("http://10.0.0.2:80"), Upstream: "http://10.0.0.2:80", Outcome: OutcomeOK, TTFB: 30 * time.Millisecond,
				Connect: time.Millisecond, ExitIP: netip.MustParseAddr("192.0.2.2"), Anonymity: rotate.AnonymityElite, Score: 0.5},
			{Entry: entry("socks5://10.0.0.3:1080"), Upstream: "socks5://10.0.0.3:1080", Outcome: OutcomeOK, TTFB: 10 * time.Millisecond,
				Connect: time.Millisecond, ExitIP: netip.MustParseAddr("192.0.2.3"), Anonymity: rotate.AnonymityAnonymous, Score: 1},
			{Entry: entry("http://10.0.0.4:80"), Upstream: "http://10.0.0.4:80", Outcome: OutcomeFiltered, TTFB: 20 * time.Millisecond,
				Anonymity: rotate.AnonymityTransparent, Err: ErrAnonymity},
		},
		Judges:      []JudgeStatus{{URL: "http://j1/", Err: errors.New("refused")}, {URL: "http://j2/", Self: netip.MustParseAddr("198.51.100.1")}},
		Interrupted: true,
	}
}

func TestWriteTableAndList(t *testing.T) {
	rep := sampleReport(t)
	var b bytes.Buffer
	require.NoError(t, WriteTable(&b, rep))
	out := b.String()
	lines := strings.Split(out, "\n")
	require.GreaterOrEqual(t, len(lines), 5)
	assert.True(t, strings.HasPrefix(lines[1], "10.0ms"), "fastest first: %q", lines[1])
	assert.Contains(t, lines[2], "filtered")
	assert.Contains(t, lines[3], "30.0ms")
	assert.Contains(t, lines[4], "timeout")
	assert.Contains(t, out, "checked 4 of 4 upstreams")
	assert.Contains(t, out, "(interrupted)")
	assert.Contains(t, out, "results:   ok 2, filtered 1, timeout 1")
	assert.Contains(t, out, "anonymity: elite 1, anonymous 1, transparent 1")
	assert.Contains(t, out, "judge http://j1/: no answer directly (tried last): refused")
	assert.Contains(t, out, "judge http://j2/: ok, sees this host as 198.51.100.1")
	assert.NotContains(t, out, "pw@")

	b.Reset()
	require.NoError(t, WriteList(&b, rep))
	assert.Equal(t, "# hopper check: 2 good of 4 checked\n"+
		"socks5://10.0.0.3:1080  # 10.0ms anonymous exit 192.0.2.3\n"+
		"http://10.0.0.2:80  # 30.0ms elite exit 192.0.2.2\n", b.String())
}

func TestProgress(t *testing.T) {
	rep := sampleReport(t)
	var plain bytes.Buffer
	p := NewProgress(&plain, len(rep.Results), false)
	for _, r := range rep.Results {
		p.Add(r)
	}
	p.Finish()
	lines := strings.Split(strings.TrimSuffix(plain.String(), "\n"), "\n")
	require.Len(t, lines, 4)
	assert.Equal(t, "[1/4] timeout http://u:***@10.0.0.1:80: slow", lines[0])
	assert.Equal(t, "[2/4] ok http://10.0.0.2:80 ttfb 30.0ms exit 192.0.2.2 elite", lines[1])
	assert.NotContains(t, plain.String(), "\r")

	var tty bytes.Buffer
	p = NewProgress(&tty, len(rep.Results), true)
	for _, r := range rep.Results {
		p.Add(r)
	}
	p.Finish()
	out := tty.String()
	assert.True(t, strings.HasPrefix(out, "\r[#######-----"), "%q", out)
	assert.Contains(t, out, "] 4/4  ok 2  bad 2")
	assert.NotContains(t, out, "\n")
	assert.True(t, strings.HasSuffix(out, "\r"), "the bar is cleared at the end")
}
