package cliutil

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fakeClock advances only when told, so interval logic is tested exactly.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time       { return c.t }
func (c *fakeClock) step(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock            { return &fakeClock{t: time.Unix(1e9, 0)} }
func lines(s string) []string             { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }
func rates(s string) [][]string           { return rateRE.FindAllStringSubmatch(s, -1) }

var rateRE = regexp.MustCompile(`[0-9.]+ ([a-z]+)/([a-z]+)`)

// A log file or pipe gets plain lines, not carriage-return redraws.
func TestNewBarOnBufferWritesPlainLines(t *testing.T) {
	var buf bytes.Buffer
	b := NewBar(1000, "files", &buf, false)
	for range 999 {
		b.Add(1)
	}
	b.Finish()
	out := buf.String()
	if strings.ContainsAny(out, "\r\x1b") {
		t.Fatalf("bar on a buffer wrote terminal control characters: %q", out)
	}
	if got := lines(out); len(got) != 1 || !strings.HasPrefix(got[0], "files: 1000/1000 (100%)") {
		t.Fatalf("want one final line, got %q", out)
	}
}

// Two hours of training at 10 steps/s leave about 150 lines, each with the
// rate in steps per second, and a last line with the time taken.
func TestBarOffTerminalTwoHourRunStaysSmall(t *testing.T) {
	var buf bytes.Buffer
	c := newFakeClock()
	const total = 72000
	b := newBar(total, "training", &buf, false, false, 0, BarOptions{Unit: "steps"}, c.now)
	for range total {
		c.step(100 * time.Millisecond)
		b.Describe("training, loss 1.2345")
		b.Add(1)
	}
	b.Exit()
	out := buf.String()
	if strings.ContainsAny(out, "\r\x1b") {
		t.Fatalf("terminal control characters in a log: %q", out[:200])
	}
	ls := lines(out)
	// 10 lines in the first 100 s, then one a minute, then the last.
	if len(ls) < 100 || len(ls) > 150 || len(out) > 16<<10 {
		t.Fatalf("%d lines, %d bytes for a two-hour run:\n%s", len(ls), len(out), out)
	}
	for _, l := range ls {
		r := rates(l)
		if len(r) != 1 || r[0][1] != "steps" || r[0][2] != "s" {
			t.Fatalf("line %q: want one rate in steps/s", l)
		}
	}
	if ls[0] != "training, loss 1.2345: 100/72000 (0%), 10.0 steps/s, eta 2h00m" {
		t.Errorf("first line %q", ls[0])
	}
	if last := ls[len(ls)-1]; last != "training, loss 1.2345: 72000/72000 (100%), 10.0 steps/s, took 2h00m" {
		t.Errorf("last line %q", last)
	}
}

// A slow job keeps its unit per second (the old bar switched to /min and /hr
// and started at "0 samples/hr"), on a terminal too.
func TestBarKeepsOneUnitWhenSlow(t *testing.T) {
	for _, tty := range []bool{false, true} {
		var buf bytes.Buffer
		c := newFakeClock()
		b := newBar(100, "vocode", &buf, false, tty, 0, BarOptions{Unit: "samples", Every: time.Second}, c.now)
		b.Add(0)
		for range 20 {
			c.step(90 * time.Second)
			b.Add(1)
		}
		b.Exit()
		out := buf.String()
		if strings.Contains(out, "\r") != tty {
			t.Errorf("tty=%v: carriage returns %v in %q", tty, !tty, out)
		}
		rs := rates(out)
		if len(rs) == 0 {
			t.Fatalf("tty=%v: no rate in %q", tty, out)
		}
		for _, r := range rs {
			if r[1] != "samples" || r[2] != "s" {
				t.Fatalf("tty=%v: rate %q in %q; want samples/s only", tty, r[0], out)
			}
		}
		if !strings.Contains(out, "0.0111 samples/s") {
			t.Errorf("tty=%v: want 1/90 samples/s in %q", tty, out)
		}
	}
}

// A resumed run counts from where it stopped; the rate is this run's.
func TestBarStartOffsetsCountNotRate(t *testing.T) {
	var buf bytes.Buffer
	c := newFakeClock()
	b := newBar(200000, "training", &buf, false, false, 0, BarOptions{Unit: "steps", Start: 16000}, c.now)
	for range 20 {
		c.step(time.Second)
		b.Add(1)
	}
	b.Exit()
	want := "training: 16010/200000 (8%), 1.00 steps/s, eta 51h07m\n" +
		"training: 16020/200000 (8%), 1.00 steps/s, eta 51h06m\n" +
		"training: 16020/200000 (8%), 1.00 steps/s, took 20s\n"
	if buf.String() != want {
		t.Fatalf("got\n%swant\n%s", buf.String(), want)
	}
}

// On a terminal the line is redrawn in place, cleared for messages, and left
// on screen with a newline at the end, once.
func TestBarOnTerminalRedrawsAndEndsOnce(t *testing.T) {
	var buf bytes.Buffer
	c := newFakeClock()
	b := newBar(10, "mel", &buf, false, true, 40, BarOptions{Unit: "files"}, c.now)
	c.step(time.Second)
	b.Add(5)
	b.Clear()
	buf.WriteString("a message\n")
	c.step(time.Second)
	b.Add(5)
	b.Finish()
	b.Exit()
	want := "\r[==========          ] mel: 5/10 (50%),\x1b[K" + "\r\x1b[K" + "a message\n" +
		"\r[====================] mel: 10/10 (100%\x1b[K\n"
	if buf.String() != want {
		t.Fatalf("got  %q\nwant %q", buf.String(), want)
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 59499 * time.Millisecond: "59s", 65 * time.Second: "1m05s",
		time.Hour + 29*time.Second: "1h00m", 18*time.Hour + 12*time.Minute: "18h12m",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
