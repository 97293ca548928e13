//go:build unix

package listening

import (
	"bytes"
	"context"
	"hash/fnv"
	"html"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

const chromium = "/usr/bin/chromium"

var (
	bodyAttr = regexp.MustCompile(`data-([a-z-]+)="([^"]*)"`)
	bodyTag  = regexp.MustCompile(`<body[^>]*>`)
	csvPre   = regexp.MustCompile(`(?s)<pre id="results-csv"[^>]*>(.*?)</pre>`)
)

// runPage opens the MOS page in headless Chromium in its autotest mode (see
// MOSPage) and returns the <body> data attributes and the results CSV the page
// produced. Driving the page through its own URL hook and --dump-dom needs no
// DevTools client and no extra Go module; the CSV in the DOM is the exact
// text the page hands to the download link.
func runPage(t *testing.T, page, rater string) (map[string]string, string) {
	t.Helper()
	u := url.URL{Scheme: "file", Path: page, RawQuery: url.Values{"autotest": {"1"}, "rater": {rater}}.Encode()}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Not t.TempDir: Chromium's helper processes may still be writing the
	// profile for a moment after the browser is gone.
	profile, err := os.MkdirTemp("", "wavecat-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for i := 0; i < 20 && os.RemoveAll(profile) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir="+profile, "--virtual-time-budget=10000", "--dump-dom", u.String())
	// Its own process group, so the browser and its helpers end together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	// Chromium sometimes prints the whole DOM and then never exits (about
	// one run in ten here), so stop reading at the end of the document and
	// end the process ourselves.
	var buf bytes.Buffer
	chunk := make([]byte, 64<<10)
	for !bytes.Contains(buf.Bytes(), []byte("</html>")) {
		n, err := stdout.Read(chunk)
		buf.Write(chunk[:n])
		if err != nil {
			break
		}
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	dom := buf.String()
	if !strings.Contains(dom, "</html>") {
		t.Fatalf("chromium on %s: no complete DOM (%d bytes; timed out: %v)", u.String(), len(dom), ctx.Err() != nil)
	}
	attrs := map[string]string{}
	for _, m := range bodyAttr.FindAllStringSubmatch(bodyTag.FindString(dom), -1) {
		attrs[m[1]] = html.UnescapeString(m[2])
	}
	m := csvPre.FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("rater %q: no results in the page's DOM (attributes %v)", rater, attrs)
	}
	return attrs, html.UnescapeString(m[1])
}

// autoRating is the page's autotest rating, computed independently here:
// 1 + FNV-1a-32(rater|stimulus) mod 5.
func autoRating(rater, stimulus string) int {
	h := fnv.New32a()
	h.Write([]byte(rater + "|" + stimulus))
	return 1 + int(h.Sum32()%5)
}

// The full round trip: export, three raters complete the page in a real
// browser, their CSVs go through ReadResults and Score.
func TestMOSPageInChromium(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("skipping the browser test: %s not found (Debian package chromium)", chromium)
	}
	dir := t.TempDir()
	key, err := Export(testItems(), ExportOptions{Dir: dir, SampleRate: 22050, LUFS: -23, Anchor: true})
	if err != nil {
		t.Fatal(err)
	}
	k, err := ReadKey(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, MOSDir, "index.html")
	raters := []string{"r1", "r2", `O'Brien, "Jo"`, "=1+1"} // the last would be a formula in a spreadsheet
	var all []Rating
	orders := map[string]string{}
	want := map[string][]float64{}
	for _, r := range raters {
		attrs, text := runPage(t, page, r)
		if attrs["autotest"] != "done" || attrs["blocked-at-start"] != "true" || attrs["blocked-before-last"] != "true" || attrs["enabled-when-done"] != "true" || attrs["locked-until-played"] != "true" {
			t.Errorf("rater %q: gating %v: want ratings locked until played, submit blocked until the last rating and enabled after", r, attrs)
		}
		orders[r] = attrs["order"]
		got := strings.Fields(attrs["order"])
		sorted := append([]string{}, got...)
		sort.Strings(sorted)
		if len(sorted) != len(key) {
			t.Fatalf("rater %q saw %d stimuli, want %d", r, len(sorted), len(key))
		}
		for i := range key {
			if sorted[i] != key[i].File {
				t.Fatalf("rater %q saw %v, want the key's stimuli", r, sorted)
			}
		}
		if strings.HasPrefix(r, "=") && !strings.Contains(text, "\n'"+r+",") {
			t.Errorf("rater %q not neutralised against spreadsheet formulas in the page's CSV:\n%s", r, text)
		}
		p := filepath.Join(dir, "ratings-"+r[:2]+".csv")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		rs, err := ReadResults(p, k)
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		if len(rs) != len(key) {
			t.Fatalf("rater %q: %d ratings, want %d", r, len(rs), len(key))
		}
		for _, x := range rs {
			if x.Rater != r {
				t.Errorf("rater came back as %q, want %q (CSV quoting)", x.Rater, r)
			}
			if x.Score != autoRating(r, x.Stimulus.File) {
				t.Errorf("rater %q, %s: rating %d, page should have given %d", r, x.Stimulus.File, x.Score, autoRating(r, x.Stimulus.File))
			}
			if _, err := time.Parse(time.RFC3339, x.Timestamp); err != nil {
				t.Errorf("timestamp %q: %v", x.Timestamp, err)
			}
			want[x.Stimulus.System] = append(want[x.Stimulus.System], float64(x.Score))
		}
		all = append(all, rs...)
	}
	if orders["r1"] == orders["r2"] || orders["r2"] == orders[raters[2]] {
		t.Errorf("raters got the same order: %v", orders)
	}
	if again, _ := runPage(t, page, "r1"); again["order"] != orders["r1"] {
		t.Errorf("rater r1's order changed on reload:\n%s\n%s", again["order"], orders["r1"])
	}
	scores := Score(all)
	if len(scores) != 4 {
		t.Fatalf("scores %+v", scores)
	}
	for _, s := range scores {
		var sum float64
		for _, v := range want[s.System] {
			sum += v
		}
		if m := sum / float64(len(want[s.System])); math.Abs(s.MOS-m) > 1e-12 || s.Ratings != 2*len(raters) || s.Raters != len(raters) {
			t.Errorf("%s: %+v, want MOS %g from %d ratings by %d raters", s.System, s, m, 2*len(raters), len(raters))
		}
	}
}
