package listening

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// formulaStart holds the characters that make a spreadsheet read a cell as a
// formula (OWASP "CSV injection").
const formulaStart = "=+-@\t\r"

// formulaLike reports whether s, after any leading single quotes, starts
// like a formula.
func formulaLike(s string) bool {
	t := strings.TrimLeft(s, "'")
	return t != "" && strings.ContainsRune(formulaStart, rune(t[0]))
}

// csvCell neutralises s for a CSV a person may open in a spreadsheet: a
// system name or utterance id such as "=HYPERLINK(...)" or "-1+2" gets a
// leading single quote, so it is shown as text and never evaluated. Values
// that already start with quotes before a formula character get one more, so
// cellText recovers every value exactly.
func csvCell(s string) string {
	if formulaLike(s) {
		return "'" + s
	}
	return s
}

// cellText undoes csvCell. A value starting with a quote that is not
// followed by a formula character is kept as it is, so keys written before
// the quoting existed read back unchanged.
func cellText(s string) string {
	if strings.HasPrefix(s, "'") && formulaLike(s) {
		return s[1:]
	}
	return s
}

// markdownCell keeps s inside one markdown table cell: backslashes and pipes
// are escaped (an unescaped | would start a new column) and line breaks,
// which would end the row, become spaces.
func markdownCell(s string) string {
	return strings.NewReplacer(`\`, `\\`, "|", `\|`, "\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// csvTable streams a CSV file with a header row, one record at a time, so
// memory does not grow with the file.
type csvTable struct {
	path string
	f    *os.File
	r    *csv.Reader
	want []string
	col  []int    // column of each wanted field
	row  []string // reused for each record
}

// openCSV opens path and reads its header: names are matched
// case-insensitively (a UTF-8 byte order mark and spaces are ignored), every
// wanted column must be there, extra columns are ignored.
func openCSV(path string, want ...string) (*csvTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	header, err := r.Read()
	if err == io.EOF {
		f.Close()
		return nil, fmt.Errorf("%s: empty file (want a header with %s)", path, strings.Join(want, ", "))
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	t := &csvTable{path: path, f: f, r: r, want: want, col: make([]int, len(want)), row: make([]string, len(want))}
	for i, w := range want {
		c, ok := col[w]
		if !ok {
			f.Close()
			return nil, fmt.Errorf("%s: missing column %q (header: %s; want %s)", path, w, strings.Join(header, ","), strings.Join(want, ","))
		}
		t.col[i] = c
	}
	return t, nil
}

// next returns the wanted fields of the next record, in the order asked for
// and with csvCell undone, and the line the record starts on; io.EOF after
// the last. The slice is reused by the following call.
func (t *csvTable) next() ([]string, int, error) {
	rec, err := t.r.Read()
	if err == io.EOF {
		return nil, 0, io.EOF
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, pe.StartLine, fmt.Errorf("%s: %w", t.path, err)
		}
		return nil, 0, fmt.Errorf("%s: %w", t.path, err)
	}
	line, _ := t.r.FieldPos(0)
	for i, c := range t.col {
		if c >= len(rec) {
			return nil, line, fmt.Errorf("%s line %d: %d fields, no %q", t.path, line, len(rec), t.want[i])
		}
		t.row[i] = cellText(rec[c])
	}
	return t.row, line, nil
}

func (t *csvTable) close() { t.f.Close() }
