package ljspeech

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseMetadataQuotesCRLFBOMTrailingNewlines(t *testing.T) {
	in := "\xef\xbb\xbfLJ001-0001|He said \"no\" twice.|He said \"no\" twice.\r\n" +
		"LJ001-0002|\"Quoted, with a comma\"|\"Quoted, with a comma\"\n" +
		"LJ001-0003|In 1850.|In eighteen fifty.\r\n\r\n\n"
	got, err := ParseMetadata([]byte(in), "metadata.csv")
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{ID: "LJ001-0001", Text: `He said "no" twice.`, Norm: `He said "no" twice.`, Line: 1},
		{ID: "LJ001-0002", Text: `"Quoted, with a comma"`, Norm: `"Quoted, with a comma"`, Line: 2},
		{ID: "LJ001-0003", Text: "In 1850.", Norm: "In eighteen fifty.", Line: 3},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseMetadataNoTrailingNewlineAndEmptyTextFields(t *testing.T) {
	got, err := ParseMetadata([]byte("a|b|c\nd||"), "m")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].ID != "d" || got[1].Text != "" || got[1].Norm != "" {
		t.Fatalf("got %+v", got)
	}
}

// Every bad line is reported with its number, in one error.
func TestParseMetadataListsEveryBadLine(t *testing.T) {
	in := strings.Join([]string{
		"LJ001-0001|ok|ok",        // 1
		"LJ001-0002|two fields",   // 2
		"LJ001-0003|a|b|c",        // 3: four fields
		"|no id|no id",            // 4
		"LJ001-0001|dup|dup",      // 5
		"LJ001-0006|bad \xff|x",   // 6
		"",                        // 7: blank line in the middle
		"../etc|escape|escape",    // 8
		" LJ001-0009|space|space", // 9
		"LJ001-0010|fine|fine",    // 10
	}, "\n") + "\n"
	_, err := ParseMetadata([]byte(in), "/data/metadata.csv")
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	for _, want := range []string{
		"8 bad line(s)",
		"/data/metadata.csv:2: 2 fields, want 3",
		"/data/metadata.csv:3: 4 fields, want 3",
		"/data/metadata.csv:4: empty id",
		`/data/metadata.csv:5: duplicate id "LJ001-0001" (first on line 1)`,
		"/data/metadata.csv:6: invalid UTF-8 at byte 16",
		"/data/metadata.csv:7: empty line",
		`/data/metadata.csv:8: id "../etc" cannot be a file name`,
		`/data/metadata.csv:9: id " LJ001-0009" has leading or trailing spaces`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, ":10:") || strings.Contains(msg, ":1:") {
		t.Errorf("good lines reported:\n%s", msg)
	}
}

func TestParseMetadataCapsTheList(t *testing.T) {
	in := strings.Repeat("only|two\n", 80)
	_, err := ParseMetadata([]byte(in), "m")
	if err == nil || !strings.Contains(err.Error(), "80 bad line(s)") || !strings.Contains(err.Error(), "and 30 more bad lines") {
		t.Fatalf("err = %v", err)
	}
	if strings.Count(err.Error(), "2 fields") != maxLineErrors {
		t.Fatalf("want %d listed lines", maxLineErrors)
	}
}

func TestParseMetadataEmptyFile(t *testing.T) {
	for _, in := range []string{"", "\n\n", "\xef\xbb\xbf"} {
		if _, err := ParseMetadata([]byte(in), "m"); err == nil || !strings.Contains(err.Error(), "no entries") {
			t.Errorf("%q: err = %v", in, err)
		}
	}
}

func FuzzParseMetadata(f *testing.F) {
	f.Add([]byte("LJ001-0001|a \"b\"|c\r\nLJ001-0002|x|y\n"))
	f.Add([]byte("a|b\n|c|d\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := ParseMetadata(data, "m")
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, e := range es {
			if checkID(e.ID) != nil || seen[e.ID] || !utf8.ValidString(e.Text+e.Norm) ||
				strings.ContainsAny(e.Text+e.Norm, "|\n") {
				t.Fatalf("accepted bad entry %+v", e)
			}
			seen[e.ID] = true
		}
	})
}
