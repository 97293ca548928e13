package listening

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
)

//go:embed mos.html
var mosTemplate []byte

// configMarker is where MOSPage puts the test's JSON in the template.
var configMarker = []byte("/*__CONFIG__*/null")

// MOSPage returns the self-contained MOS test page for stimuli (paths
// relative to the page). Everything is inline, so it works opened from disk
// (file://) with no server; results are downloaded by the rater as CSV with
// the columns rater,stimulus,rating,timestamp (stimulus is the file's base
// name, as in the key).
//
// For automated tests the page takes URL parameters ?autotest=1&rater=ID: it
// then consents, "plays" (fires the play event of) and rates every stimulus
// with 1 + FNV-1a(rater|stimulus) mod 5, submits, and leaves the CSV in
// <pre id="results-csv"> and the checks it made (ratings locked until the
// sample was played, submit blocked until every stimulus was rated) in data-
// attributes of <body>, so `chromium --headless --dump-dom` can read them
// back. Raters must play a sample before they can rate it.
func MOSPage(title string, stimuli []string) ([]byte, error) {
	cfg, err := json.Marshal(map[string]any{"title": title, "stimuli": stimuli})
	if err != nil {
		return nil, err
	}
	if bytes.Count(mosTemplate, configMarker) != 1 {
		return nil, fmt.Errorf("listening: MOS page template lost its config marker")
	}
	// json.Marshal escapes <, > and &, so the config cannot close the script.
	return bytes.Replace(mosTemplate, configMarker, cfg, 1), nil
}
