package bench

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReportMarkdown(t *testing.T) {
	opts, err := Options{Duration: time.Second, Reps: 3}.withDefaults()
	require.NoError(t, err)
	absent := &subject{name: colDante, fronts: []Front{FrontSOCKS5}, absent: "not installed (`make bench-peers` installs dante-server)"}
	h := &harness{
		opts: opts,
		subjects: []*subject{
			directSubject(),
			{name: colHopper, fronts: []Front{FrontCONNECT, FrontSOCKS5}, forward: true},
			absent,
		},
		res: map[resKey][]float64{
			{mBulkDown1, FrontDirect, colDirect}:  {10, 30, 20},
			{mBulkDown1, FrontCONNECT, colHopper}: {15, 16, 17},
			{mRTTP50, FrontDirect, colDirect}:     {10, 10, 10},
			{mRTTP50, FrontSOCKS5, colHopper}:     {14, 15, 16},
			{mIdleKiB, FrontCONNECT, colHopper}:   {12, 11, 13},
		},
		notes: []*note{{what: "hopper over SOCKS5, new tunnels", err: errors.New("1 of 100 tunnels failed"), count: 2}},
	}
	r := h.report()

	rows := map[string]Row{}
	for _, row := range r.Rows {
		rows[row.Key] = row
	}
	assert.InDelta(t, 20, rows["bulk-down-1/CONNECT"].Cells[colDirect].Median, 1e-9, "median of 10, 30, 20")
	assert.InDelta(t, 20, rows["bulk-down-1/SOCKS5"].Cells[colDirect].Median, 1e-9, "direct serves every front")
	assert.InDelta(t, 16, rows["bulk-down-1/CONNECT"].Cells[colHopper].Median, 1e-9)
	assert.NotContains(t, rows["bulk-down-1/SOCKS5"].Cells, colHopper)
	assert.InDelta(t, 5, rows["rtt-added/SOCKS5"].Cells[colHopper].Median, 1e-9)
	assert.NotContains(t, rows["idle-kib/CONNECT"].Cells, colDirect)
	assert.Contains(t, rows, "fwd-rate/forward")
	assert.Equal(t, []Column{{Name: colDirect}, {Name: colHopper}, {Name: colDante, Absent: absent.absent}}, r.Columns)

	md := r.Markdown()
	assert.Contains(t, md, "| scenario | front | unit | direct | hopper | dante (not installed) | hopper ÷ direct |")
	assert.Contains(t, md, "| bulk download, 1 tunnel | CONNECT | Gbit/s | 20.0 | 16.0 | — | 0.80 |")
	assert.Contains(t, md, "| memory per idle tunnel at 5000 open | CONNECT | KiB | — | 12.0 | — | — |")
	assert.Contains(t, md, "- dante: not installed")
	assert.Contains(t, md, "- hopper over SOCKS5, new tunnels: 1 of 100 tunnels failed (2 times; first error shown)")
	assert.Contains(t, md, "median of 3 repetitions of 1s")
	assert.Contains(t, md, r.Machine.CPU)
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| ") {
			assert.Equal(t, 8, strings.Count(line, "|"), "every table line has 7 cells: %q", line)
		}
	}
}

func TestPeerCellsCarryRatio(t *testing.T) {
	r := &Report{
		Columns: []Column{{Name: colDirect}, {Name: colHopper}, {Name: colTinyproxy}},
		Rows: []Row{{Scenario: "s", Front: "CONNECT", Unit: "Gbit/s", Cells: map[string]Cell{
			colDirect: {Median: 40}, colHopper: {Median: 30}, colTinyproxy: {Median: 10},
		}}},
	}
	assert.Contains(t, r.Markdown(), "| s | CONNECT | Gbit/s | 40.0 | 30.0 | 10.0 (0.25) | 0.75 |")
}

func TestFormatFigure(t *testing.T) {
	for v, want := range map[float64]string{12345.6: "12346", 123.4: "123", 12.34: "12.3", 1.234: "1.23", 0.1234: "0.123", -3.5: "-3.50"} {
		assert.Equal(t, want, formatFigure(v), "%v", v)
	}
}
