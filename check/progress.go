package check

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// barWidth is the progress bar's width in cells.
const barWidth = 30

// Progress shows a Run's progress on w: on a terminal a bar redrawn in
// place (at most every 100ms, and for the last result), otherwise one plain
// line per result. Pass its Add to Checker.Run; it is not safe for
// concurrent use, which Run never asks of it.
type Progress struct {
	w     io.Writer
	total int
	tty   bool
	start time.Time
	drawn time.Time
	done  int
	ok    int
	width int // length of the last bar drawn
}

// NewProgress returns a progress display for total entries; tty selects the
// redrawn bar.
func NewProgress(w io.Writer, total int, tty bool) *Progress {
	return &Progress{w: w, total: total, tty: tty, start: time.Now()}
}

// Add records one result.
func (p *Progress) Add(r Result) {
	p.done++
	if r.Outcome == OutcomeOK {
		p.ok++
	}
	if !p.tty {
		line := fmt.Sprintf("[%d/%d] %s %s", p.done, p.total, r.Outcome, r.Upstream)
		if r.Outcome.Working() {
			if r.TTFB > 0 {
				line += " ttfb " + fmtDuration(r.TTFB)
			} else {
				line += " connect " + fmtDuration(r.Connect)
			}
			if r.ExitIP.IsValid() {
				line += fmt.Sprintf(" exit %s %s", r.ExitIP, r.Anonymity)
			}
		}
		if r.Err != nil {
			line += ": " + truncate(oneLine(r.Err.Error()), maxDetail)
		}
		fmt.Fprintln(p.w, line)
		return
	}
	if now := time.Now(); p.done == p.total || now.Sub(p.drawn) >= 100*time.Millisecond {
		p.drawn = now
		p.draw(now)
	}
}

func (p *Progress) draw(now time.Time) {
	filled := barWidth
	if p.total > 0 {
		filled = p.done * barWidth / p.total
	}
	bar := fmt.Sprintf("\r[%s%s] %d/%d  ok %d  bad %d  %s", strings.Repeat("#", filled), strings.Repeat("-", barWidth-filled),
		p.done, p.total, p.ok, p.done-p.ok, now.Sub(p.start).Round(100*time.Millisecond))
	pad := max(p.width-len(bar), 0)
	p.width = len(bar)
	fmt.Fprint(p.w, bar+strings.Repeat(" ", pad))
}

// Finish ends the display: on a terminal it clears the bar's line.
func (p *Progress) Finish() {
	if p.tty && p.width > 0 {
		fmt.Fprint(p.w, "\r"+strings.Repeat(" ", p.width)+"\r")
	}
}
