package outputs

import (
	"strings"
	"testing"
)

// TestHeadLimits: a head spec read from an untrusted checkpoint cannot ask
// for more channels than a model may have (adacat --components 1e9 used to
// size a 2e9-channel model on --resume), while every real head still builds.
func TestHeadLimits(t *testing.T) {
	for _, c := range []struct{ spec, want string }{
		{"adacat --components 1000000000", "--components 1000000000 exceeds the limit 32768"},
		{"categorical --bins 65537", "--bins 65537 exceeds the limit 65536"},
		{"mulaw --bins 100000", "--bins 100000 exceeds the limit 65536"},
		{"mol --mixtures 30000", "--mixtures 30000 exceeds the limit 21845"},
		{"adacat --components 1e300", "1e300 is out of range"},
	} {
		_, err := New(c.spec)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q) = %v, want an error containing %q", c.spec, err, c.want)
		}
	}
	for _, spec := range []string{"adacat --components 32768", "categorical --bins 65536", "mulaw --bins 65536", "mol --mixtures 21845", "mol --levels 65536", "adacat --components 256 --lambda 1e-5"} {
		h, err := New(spec)
		if err != nil || h.Channels() > MaxChannels {
			t.Errorf("New(%q): %v", spec, err)
		}
	}
}
