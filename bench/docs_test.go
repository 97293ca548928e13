package bench

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

// docs/benchmarks.md is a reference, not a lab notebook: every table of
// measures says on which machine, when and with which command each figure
// was measured, and the prose does not narrate which call or sitting
// measured what (history stays in git).
func TestBenchmarksDocIsAReference(t *testing.T) {
	f, err := os.Open("../docs/benchmarks.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	diary := regexp.MustCompile(`(?i)\b(session|sitting|(first|second|third|fourth|fifth|last|previous|earlier|next) (call|run of the day)|of (three|four|five) calls|we measured|I measured)\b`)
	sc := bufio.NewScanner(f)
	line, tables := 0, 0
	var header []string
	for sc.Scan() {
		line++
		l := sc.Text()
		if m := diary.FindString(l); m != "" {
			t.Errorf("docs/benchmarks.md:%d reads as a diary (%q): %s", line, m, l)
		}
		if !strings.HasPrefix(l, "|") {
			header = nil
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if header == nil {
			header = cells
			if strings.TrimSpace(cells[0]) == "measure" {
				tables++
				for _, want := range []string{"machine", "date", "command", "ratio"} {
					if !containsCell(cells, want) {
						t.Errorf("docs/benchmarks.md:%d: measure table without a %q column", line, want)
					}
				}
			}
			continue
		}
		if strings.TrimSpace(header[0]) != "measure" || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			continue
		}
		for i, h := range header {
			h = strings.TrimSpace(h)
			if (h == "machine" || h == "date" || h == "command") && (i >= len(cells) || strings.TrimSpace(cells[i]) == "") {
				t.Errorf("docs/benchmarks.md:%d: row without its %s", line, h)
			}
		}
	}
	if tables < 8 {
		t.Errorf("docs/benchmarks.md has %d measure tables, want one per area (>= 8)", tables)
	}
}

func containsCell(cells []string, want string) bool {
	for _, c := range cells {
		if strings.Contains(strings.ToLower(c), want) {
			return true
		}
	}
	return false
}

// The project states its licence: a LICENSE file with the BSD 3-Clause text,
// named in the README.
func TestLicenseStated(t *testing.T) {
	lic, err := os.ReadFile("../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Redistribution and use in source and binary forms", "Neither the name of the copyright holder"} {
		if !strings.Contains(string(lic), want) {
			t.Errorf("LICENSE lacks %q", want)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "BSD-3-Clause") && !strings.Contains(string(readme), "BSD 3-Clause") {
		t.Error("README.md does not name the licence")
	}
}
