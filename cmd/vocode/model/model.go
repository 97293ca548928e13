// Package model embeds vocode's default checkpoint, used when no
// --checkpoint, $WAVECAT_CHECKPOINT or ./runs model exists, so a fresh build
// can vocode out of the box. See README.md for what it is and how it is
// rebuilt (make default-model).
package model

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

//go:embed default
var files embed.FS

// Dir is the checkpoint's folder inside the embedded files.
const Dir = "default"

// Extract writes the checkpoint files into dir (which must exist), so the
// ordinary checkpoint loader (with its checksum verification) reads them.
func Extract(dir string) error {
	entries, err := fs.ReadDir(files, Dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		b, err := files.ReadFile(Dir + "/" + e.Name())
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return fmt.Errorf("embedded model: %w", err)
		}
	}
	return nil
}

// Untrained reports whether the embedded checkpoint is the randomly
// initialised placeholder (config.json extra {"untrained": true}): vocode
// then says so, since its output is noise.
func Untrained() bool {
	b, err := files.ReadFile(Dir + "/config.json")
	if err != nil {
		return true
	}
	var c struct {
		Extra struct {
			Untrained bool `json:"untrained"`
		} `json:"extra"`
	}
	return json.Unmarshal(b, &c) == nil && c.Extra.Untrained
}

//go:embed QUALITY
var quality string

// Quality is the one-line measured verdict on the embedded model (the
// QUALITY file, from the vocode eval table in docs/evaluation.md) that
// vocode prints when it uses it; empty when there is nothing to warn of.
func Quality() string { return strings.TrimSpace(quality) }
