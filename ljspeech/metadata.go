package ljspeech

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// Entry is one line of metadata.csv.
type Entry struct {
	ID   string // e.g. "LJ001-0001"; also the wav's base name
	Text string // transcript as read
	Norm string // normalised transcript (numbers and abbreviations spelled out)
	Line int    // 1-based line number in metadata.csv, for error messages
}

// maxLineErrors bounds how many bad lines one error lists, so a file in the
// wrong format (every line bad) gives a readable message.
const maxLineErrors = 50

// ReadMetadata reads an LJSpeech metadata.csv. The format is '|' separated
// with exactly three fields and NO quoting: a '"' is part of the text, which
// is why encoding/csv cannot be used (it would treat quotes as delimiters).
// A UTF-8 byte-order mark, CRLF line ends and blank lines at the end of the
// file are accepted; every other problem (field count, empty or unsafe id,
// duplicate id, invalid UTF-8, blank line in the middle) is an error naming
// the file and line, and all bad lines are listed, not just the first.
func ReadMetadata(path string) ([]Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ljspeech: %w", err)
	}
	return ParseMetadata(data, path)
}

// ParseMetadata parses metadata.csv contents; name is used in error messages.
func ParseMetadata(data []byte, name string) ([]Entry, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	lines := bytes.Split(data, []byte("\n"))
	// Blank lines at the end (the usual trailing newline, or a few) are fine.
	for len(lines) > 0 && len(bytes.TrimRight(lines[len(lines)-1], "\r")) == 0 {
		lines = lines[:len(lines)-1]
	}
	var (
		entries []Entry
		errs    []error
		nbad    int
		seen    = make(map[string]int, len(lines))
	)
	bad := func(line int, format string, args ...any) {
		nbad++
		if nbad <= maxLineErrors {
			errs = append(errs, fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...)))
		}
	}
	for i, raw := range lines {
		ln := i + 1
		raw = bytes.TrimSuffix(raw, []byte("\r"))
		if !utf8.Valid(raw) {
			bad(ln, "invalid UTF-8 at byte %d", firstInvalidUTF8(raw)+1)
			continue
		}
		s := string(raw)
		if strings.TrimSpace(s) == "" {
			bad(ln, "empty line")
			continue
		}
		f := strings.Split(s, "|")
		if len(f) != 3 {
			bad(ln, "%d fields, want 3 (id|text|normalised text)", len(f))
			continue
		}
		id := f[0]
		if err := checkID(id); err != nil {
			bad(ln, "%v", err)
			continue
		}
		if prev, dup := seen[id]; dup {
			bad(ln, "duplicate id %q (first on line %d)", id, prev)
			continue
		}
		seen[id] = ln
		entries = append(entries, Entry{ID: id, Text: f[1], Norm: f[2], Line: ln})
	}
	if nbad > maxLineErrors {
		errs = append(errs, fmt.Errorf("%s: ... and %d more bad lines", name, nbad-maxLineErrors))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("ljspeech: %d bad line(s) in metadata:\n%w", nbad, errors.Join(errs...))
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("ljspeech: %s: no entries", name)
	}
	return entries, nil
}

// checkID rejects ids that cannot safely name files in wavs/ and the dump.
func checkID(id string) error {
	switch {
	case id == "":
		return errors.New("empty id")
	case id != strings.TrimSpace(id):
		return fmt.Errorf("id %q has leading or trailing spaces", id)
	case id == "." || id == ".." || strings.ContainsAny(id, "/\\\x00"):
		return fmt.Errorf("id %q cannot be a file name", id)
	}
	return nil
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}
