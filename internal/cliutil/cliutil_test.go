package cliutil

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

func TestForEachRunsAllAndJoinsErrorsInOrder(t *testing.T) {
	var ran, done atomic.Int64
	err := ForEach(50, 3, func(i int) error {
		ran.Add(1)
		if i == 7 || i == 42 {
			return fmt.Errorf("item %d bad", i)
		}
		return nil
	}, func() { done.Add(1) })
	if ran.Load() != 50 || done.Load() != 50 {
		t.Fatalf("ran %d, done %d; want 50 each", ran.Load(), done.Load())
	}
	if err == nil {
		t.Fatal("want the two errors")
	}
	msg := err.Error()
	if !strings.Contains(msg, "item 7 bad") || !strings.Contains(msg, "item 42 bad") || strings.Index(msg, "item 7") > strings.Index(msg, "item 42") {
		t.Fatalf("errors not joined in order: %q", msg)
	}
}

func TestForEachNoItemsNoError(t *testing.T) {
	if err := ForEach(0, 4, func(int) error { return errors.New("never") }, nil); err != nil {
		t.Fatal(err)
	}
}

func TestBarWritesProgressUnlessQuiet(t *testing.T) {
	var buf bytes.Buffer
	b := NewBar(3, "files", &buf, false)
	b.Add(3)
	if !strings.Contains(buf.String(), "files") {
		t.Fatalf("bar printed %q", buf.String())
	}
	buf.Reset()
	q := NewBar(3, "files", &buf, true)
	q.Add(3)
	if buf.Len() != 0 {
		t.Fatalf("quiet bar printed %q", buf.String())
	}
}
