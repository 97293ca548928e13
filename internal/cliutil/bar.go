package cliutil

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// DefaultEvery is how often a Bar that is not on a terminal prints a status
// line at first; after ten such intervals it prints one every six (every
// minute by default), so the log of a two-hour training run holds about 130
// lines.
const DefaultEvery = 10 * time.Second

// redrawEvery throttles redraws on a terminal (a training step or a batch of
// samples can take microseconds).
const redrawEvery = 150 * time.Millisecond

// BarOptions are the less common settings of a Bar.
type BarOptions struct {
	// Unit names what Add counts ("it" when empty). The rate is always
	// printed in Unit per second, so lines of one bar compare at a glance.
	Unit string
	// Start is how many items were done before this run (a resumed
	// training): the count starts there, the rate and eta leave them out.
	Start int64
	// Every is the first status-line interval off a terminal (DefaultEvery
	// when 0).
	Every time.Duration
}

// Bar shows the progress of a job of known size. On a terminal it redraws one
// line in place; anywhere else (a log file, a pipe, CI) a redrawn bar would
// leave megabytes of carriage returns, so it prints a plain status line now
// and then and a last one when done. Its methods are safe for concurrent use.
type Bar struct {
	mu          sync.Mutex
	w           io.Writer
	quiet, tty  bool
	cols        int // terminal width, 0 when unknown
	total       int64
	start, n    int64
	desc, unit  string
	every       time.Duration
	now         func() time.Time
	began, last time.Time
	lines       int  // status lines printed off a terminal
	drawn       bool // a terminal line is on screen
	done        bool
}

// NewBar returns a progress bar on w (stderr when nil) for total items. It is
// silent when quiet is set, so scripted runs and tests stay readable.
func NewBar(total int64, what string, w io.Writer, quiet bool) *Bar {
	return NewBarOptions(total, what, w, quiet, BarOptions{})
}

// NewBarOptions is NewBar with a unit, a starting count or another interval.
func NewBarOptions(total int64, what string, w io.Writer, quiet bool, o BarOptions) *Bar {
	if w == nil {
		w = os.Stderr
	}
	tty, cols := false, 0
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
		if c, _, err := term.GetSize(int(f.Fd())); err == nil {
			cols = c
		}
	}
	return newBar(total, what, w, quiet, tty, cols, o, time.Now)
}

func newBar(total int64, what string, w io.Writer, quiet, tty bool, cols int, o BarOptions, now func() time.Time) *Bar {
	if o.Unit == "" {
		o.Unit = "it"
	}
	if o.Every <= 0 {
		o.Every = DefaultEvery
	}
	t := now()
	return &Bar{w: w, quiet: quiet, tty: tty, cols: cols, total: total, start: o.Start,
		desc: what, unit: o.Unit, every: o.Every, now: now, began: t, last: t}
}

// Describe replaces the text before the count (shown from the next line).
func (b *Bar) Describe(s string) {
	b.mu.Lock()
	b.desc = s
	b.mu.Unlock()
}

// Add counts n more items done.
func (b *Bar) Add(n int) { b.Add64(int64(n)) }

// Add64 counts n more items done; reaching the total prints the last line.
func (b *Bar) Add64(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.n += n
	if b.start+b.n >= b.total {
		b.end()
		return
	}
	if b.quiet {
		return
	}
	t := b.now()
	if b.tty {
		if !b.drawn || t.Sub(b.last) >= redrawEvery {
			b.draw(t)
		}
		return
	}
	iv := b.every
	if b.lines >= 10 {
		iv = 6 * b.every
	}
	if t.Sub(b.last) >= iv {
		fmt.Fprintln(b.w, b.status(t, false))
		b.last = t
		b.lines++
	}
}

// Clear takes the bar off a terminal line so that a message can be printed
// there; the next Add draws it again. Off a terminal there is nothing to clear.
func (b *Bar) Clear() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tty && b.drawn && !b.quiet {
		io.WriteString(b.w, "\r\x1b[K")
		b.drawn = false
	}
}

// Finish fills the bar and prints its last line.
func (b *Bar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n < b.total-b.start {
		b.n = b.total - b.start
	}
	b.end()
}

// Exit prints the last line as things stand (a run stopped early) and ends
// the bar.
func (b *Bar) Exit() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.end()
}

// end prints the last line once: on a terminal it stays on screen.
func (b *Bar) end() {
	if b.done {
		return
	}
	b.done = true
	if b.quiet {
		return
	}
	t := b.now()
	if b.tty {
		b.draw(t)
		io.WriteString(b.w, "\n")
		return
	}
	fmt.Fprintln(b.w, b.status(t, true))
}

// draw redraws the terminal line: a bar, then the status, cut to the width.
func (b *Bar) draw(t time.Time) {
	const width = 20
	filled := 0
	if b.total > 0 {
		filled = int(float64(width) * float64(b.start+b.n) / float64(b.total))
	}
	filled = min(max(filled, 0), width)
	line := fmt.Sprintf("[%s%s] %s", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), b.status(t, b.done))
	if b.cols > 1 && len(line) >= b.cols {
		line = line[:b.cols-1]
	}
	io.WriteString(b.w, "\r"+line+"\x1b[K")
	b.drawn = true
	b.last = t
}

// status is one line: description, count, percent, rate in units per second
// and the time left (or, at the end, the time taken).
func (b *Bar) status(t time.Time, final bool) string {
	var s strings.Builder
	s.WriteString(b.desc)
	done := b.start + b.n
	fmt.Fprintf(&s, ": %d/%d", done, b.total)
	if b.total > 0 {
		fmt.Fprintf(&s, " (%d%%)", 100*done/b.total)
	}
	el := t.Sub(b.began)
	if b.n > 0 && el > 0 {
		rate := float64(b.n) / el.Seconds()
		fmt.Fprintf(&s, ", %s %s/s", fmtRate(rate), b.unit)
		if final {
			fmt.Fprintf(&s, ", took %s", fmtDuration(el))
		} else if left := b.total - done; left > 0 {
			eta := min(float64(left)/rate, 9999*3600) // no overflow at a crawl
			fmt.Fprintf(&s, ", eta %s", fmtDuration(time.Duration(eta*float64(time.Second))))
		}
	}
	return s.String()
}

// fmtRate gives about three significant figures, without an exponent for
// the rates a job shows (a step a minute to millions of samples a second).
func fmtRate(r float64) string {
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f", r)
	case r >= 10:
		return fmt.Sprintf("%.1f", r)
	case r >= 1:
		return fmt.Sprintf("%.2f", r)
	default:
		return fmt.Sprintf("%.3g", r)
	}
}

// fmtDuration rounds to the second below an hour and to the minute above
// ("4m05s", "18h12m").
func fmtDuration(d time.Duration) string {
	if d >= time.Hour {
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	d = d.Round(time.Second)
	if d >= time.Minute {
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}
