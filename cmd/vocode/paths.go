package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// outputPaths maps inputs to output files ending in ext (".npy", ".wav").
// With one input, -o may name the file itself; otherwise -o is a directory
// (created later, once the inputs are known to be good) and each output is
// named after its input, minus stripSuffix (train-wavenet's "-feats").
func outputPaths(ins []string, out, ext, stripSuffix string) ([]string, error) {
	isFile := strings.HasSuffix(strings.ToLower(out), ext)
	if len(ins) > 1 && isFile {
		return nil, fmt.Errorf("-o %s: with %d inputs, -o must be a directory", out, len(ins))
	}
	if !isFile {
		if st, err := os.Stat(out); err == nil && !st.IsDir() {
			return nil, fmt.Errorf("%s: not a directory (with %d inputs, -o must be a directory)", out, len(ins))
		}
	}
	outs := make([]string, len(ins))
	seen := map[string]string{}
	for i, in := range ins {
		if isFile {
			outs[i] = out
		} else {
			base := strings.TrimSuffix(filepath.Base(in), filepath.Ext(in))
			outs[i] = filepath.Join(out, strings.TrimSuffix(base, stripSuffix)+ext)
			if prev, dup := seen[outs[i]]; dup {
				return nil, fmt.Errorf("%s and %s would both write %s", prev, in, outs[i])
			}
			seen[outs[i]] = in
		}
	}
	for _, o := range outs {
		for _, in := range ins {
			if samePath(o, in) {
				return nil, fmt.Errorf("-o: %s is also an input; refusing to overwrite it", in)
			}
		}
	}
	return outs, nil
}

// samePath reports whether a and b name the same file: the same cleaned
// absolute path, or (when both exist) the same file through links.
func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	if err1 == nil && err2 == nil && aa == bb {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
