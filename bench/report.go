package bench

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Report is the outcome of a run: one row per scenario and front, one
// column per subject.
type Report struct {
	Machine Machine
	Date    time.Time
	// Commit is the module's git commit, "+dirty" when the work tree has
	// uncommitted changes, or "none" outside a repository.
	Commit string
	// Duration and Reps are what each figure was measured with.
	Duration time.Duration
	Reps     int
	Columns  []Column
	Rows     []Row
	// Notes lists failures and peers that were not measured.
	Notes []string
}

// Machine describes where the run happened.
type Machine struct {
	CPU    string // model name from /proc/cpuinfo
	Cores  int
	Kernel string
	Go     string
}

// Column is one subject: "direct", "hopper", "hopper chained", a peer.
type Column struct {
	Name string
	// Absent says why the column has no figures ("not installed ..."); empty
	// when it was measured.
	Absent string
}

// Row is one figure for every column.
type Row struct {
	// Key is stable across runs: metric key and front, "bulk-down-1/CONNECT".
	Key      string
	Scenario string
	Front    string // "CONNECT", "SOCKS5" or "HTTP forward"
	Unit     string
	// LowerIsBetter marks times, CPU and memory.
	LowerIsBetter bool
	// Process marks figures of the proxy process itself, which direct
	// lacks.
	Process bool
	// Cells by column name; a missing entry means not measured or not
	// applicable.
	Cells map[string]Cell
}

// Cell is the median of a figure's repetitions.
type Cell struct {
	Median float64
	Reps   []float64
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// report builds the Report from what the harness recorded.
func (h *harness) report() *Report {
	r := &Report{
		Machine:  machine(),
		Date:     time.Now().UTC(),
		Commit:   gitCommit(h.opts.ModuleDir),
		Duration: h.opts.Duration,
		Reps:     h.opts.Reps,
	}
	for _, n := range h.notes {
		r.Notes = append(r.Notes, n.String())
	}
	for _, s := range h.subjects {
		r.Columns = append(r.Columns, Column{Name: s.name, Absent: s.absent})
		if s.absent != "" {
			r.Notes = append(r.Notes, s.name+": "+s.absent)
		}
	}
	title := strings.NewReplacer(
		"{n}", strconv.Itoa(h.opts.BulkStreams), "{c}", strconv.Itoa(h.opts.NewTunnelConcurrency),
		"{f}", strconv.Itoa(h.opts.ForwardConns), "{i}", strconv.Itoa(h.opts.IdleTunnels))
	for m := range numMetrics {
		info := metrics[m]
		if !h.opts.runs(info.scenario) {
			continue
		}
		fronts := []Front{FrontCONNECT, FrontSOCKS5}
		if info.forward {
			fronts = []Front{FrontCONNECT}
		}
		for _, f := range fronts {
			row := Row{
				Key: info.key + "/" + f.String(), Scenario: title.Replace(info.title),
				Front: f.String(), Unit: info.unit, LowerIsBetter: info.lower,
				Process: info.process, Cells: make(map[string]Cell),
			}
			if info.forward {
				row.Key, row.Front = info.key+"/forward", "HTTP forward"
			}
			for _, s := range h.subjects {
				if c, ok := h.cell(m, f, s); ok {
					row.Cells[s.name] = c
				}
			}
			r.Rows = append(r.Rows, row)
		}
	}
	return r
}

// cell is the median for one column; direct's figures serve every front.
func (h *harness) cell(m metric, f Front, s *subject) (Cell, bool) {
	if metrics[m].derived {
		if m != mRTTAdded || s.name == colDirect {
			return Cell{}, false
		}
		base, ok1 := h.res[resKey{m: mRTTP50, front: FrontDirect, col: colDirect}]
		mine, ok2 := h.res[resKey{m: mRTTP50, front: f, col: s.name}]
		if !ok1 || !ok2 {
			return Cell{}, false
		}
		return Cell{Median: median(mine) - median(base)}, true
	}
	if s.name == colDirect {
		f = FrontDirect
	}
	v, ok := h.res[resKey{m: m, front: f, col: s.name}]
	if !ok || len(v) == 0 {
		return Cell{}, false
	}
	return Cell{Median: median(v), Reps: slices.Clone(v)}, true
}

// Markdown renders the report: a header naming the machine, date and
// commit, the table, then notes. Cells of proxies carry their ratio to
// direct in parentheses; the hopper ÷ direct column repeats hopper's.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("# hopper benchmark\n\n")
	fmt.Fprintf(&b, "- machine: %s, %d cores, Linux %s, %s\n", r.Machine.CPU, r.Machine.Cores, r.Machine.Kernel, r.Machine.Go)
	fmt.Fprintf(&b, "- date: %s; commit: %s\n", r.Date.Format("2006-01-02 15:04 UTC"), r.Commit)
	reps := fmt.Sprintf("the median of %d repetitions", r.Reps)
	if r.Reps == 1 {
		reps = "from 1 repetition"
	}
	fmt.Fprintf(&b, "- each figure is %s of %s per scenario; loopback only; "+
		"client, origins and proxy share the machine's cores\n", reps, r.Duration)
	b.WriteString("- ratio (in parentheses) = figure ÷ direct; for Gbit/s, tunnels/s and req/s higher is better, " +
		"for µs, s and KiB lower is better\n")
	b.WriteString("- CPU and memory are the proxy process's own (/proc/PID/stat utime+stime, /proc/PID/status VmRSS; " +
		"for a forking proxy the sum of Pss over its processes)\n")
	b.WriteString("- hopper chained = client → hopper → upstream hopper (http:// list entry) → origin, CPU and memory " +
		"of the first hopper; the hopper column is the same binary and flags as that upstream, reached directly\n")
	b.WriteString("- HTTPS rows: TLS 1.3 from the client to a loopback HTTPS origin through each column's tunnel, end to end; " +
		"hopper MITM = hopper --mitm --profile chrome, which ends the client's TLS with a leaf of its own CA and " +
		"opens its own uTLS connection to the origin (measured in these rows over CONNECT only: hopper intercepts " +
		"SOCKS streams to port 443 alone)\n")
	b.WriteString("- bare relay = the harness's own floor: CONNECT or SOCKS5 handshake, then io.Copy each way (splice), " +
		"nothing else (bench.ServeBareRelay, in its own process): what one proxy hop costs on this machine whatever " +
		"the proxy; hopper ÷ bare relay is hopper's own overhead above that; bare relay chained = one bare relay " +
		"reaching every target with a CONNECT through a second one, the floor of hopper chained\n\n")
	bare := false
	for _, c := range r.Columns {
		bare = bare || (c.Name == colBare && c.Absent == "")
	}

	header := []string{"scenario", "front", "unit"}
	align := []string{"---", "---", "---"}
	for _, c := range r.Columns {
		name := c.Name
		if c.Absent != "" {
			name += " (" + shortAbsent(c.Absent) + ")"
		}
		header = append(header, name)
		align = append(align, "---:")
	}
	header = append(header, "hopper ÷ direct")
	align = append(align, "---:")
	if bare {
		header = append(header, "hopper ÷ bare relay")
		align = append(align, "---:")
	}
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("| " + strings.Join(align, " | ") + " |\n")
	for _, row := range r.Rows {
		cells := []string{row.Scenario, row.Front, row.Unit}
		direct, hasDirect := row.Cells[colDirect]
		for _, c := range r.Columns {
			cell, ok := row.Cells[c.Name]
			switch {
			case !ok:
				cells = append(cells, "—")
			case c.Name == colDirect || !hasDirect || direct.Median == 0:
				cells = append(cells, formatFigure(cell.Median))
			case c.Name == colHopper:
				cells = append(cells, formatFigure(cell.Median))
			default:
				cells = append(cells, fmt.Sprintf("%s (%.2f)", formatFigure(cell.Median), cell.Median/direct.Median))
			}
		}
		ratio := "—"
		if hop, ok := row.Cells[colHopper]; ok && hasDirect && direct.Median != 0 {
			ratio = fmt.Sprintf("%.2f", hop.Median/direct.Median)
		}
		cells = append(cells, ratio)
		if bare {
			ratio = "—"
			if hop, ok := row.Cells[colHopper]; ok {
				if floor, ok := row.Cells[colBare]; ok && floor.Median != 0 {
					ratio = fmt.Sprintf("%.2f", hop.Median/floor.Median)
				}
			}
			cells = append(cells, ratio)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range r.Notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

func shortAbsent(s string) string {
	short, _, _ := strings.Cut(s, " (")
	return short
}

// formatFigure keeps about three significant digits.
func formatFigure(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func machine() Machine {
	m := Machine{CPU: "unknown CPU", Cores: runtime.NumCPU(), Kernel: "unknown", Go: runtime.Version()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	return m
}

// gitCommit names the commit of the work tree at dir.
func gitCommit(dir string) string {
	if dir == "" {
		return "none"
	}
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "none (no commit yet)"
	}
	commit := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		commit += "+dirty"
	}
	return commit
}
