package train

// Choosing the checkpoint a resume continues.
//
// Latest trusts any step directory that has a checksums.json, and passes
// over one without it in silence. So a corrupt newest checkpoint made
// --resume refuse outright, while one missing its checksums.json made it
// resume from an older one without saying so and then fail when the run
// came to save over the damaged directory. PrepareResume verifies instead,
// falls back to the newest checkpoint that would really resume, and moves
// the damaged ones out of the way where they can still be inspected.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/wavecat/wavecat/internal/atomicfile"
	"github.com/wavecat/wavecat/internal/dirlock"
)

// ErrNoCheckpoint is wrapped by PrepareResume's error when the run
// directory holds no step directories at all.
var ErrNoCheckpoint = errors.New("no checkpoint")

// BadSuffix is appended to a step directory PrepareResume sets aside: the
// name no longer matches a step, so Latest, Prune and the next save of that
// step leave it alone.
const BadSuffix = ".bad"

// Unusable is a step directory that a resume passed over, and why.
type Unusable struct {
	Dir     string // the step directory, e.g. run/step-000000200
	Err     error  // why it cannot be resumed
	MovedTo string // where it was moved ("" if it was not)
}

// CheckResumable loads the checkpoint dir completely and checks all a
// resume needs from it: every checksum and header, a model description
// that is valid and matches the weights (ModelInfo.Validate), the run's
// training section, EMA and optimizer state, and matching step counters.
func CheckResumable(dir string) error {
	ck, err := Load(dir)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, ConfigFile)
	if err := validateInfo(ck.Config); err != nil {
		return fmt.Errorf("%s: %w", cfgPath, err)
	}
	if _, err := ReadRunState(ck.Config); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if ck.EMA == nil || ck.Optimizer == nil {
		return fmt.Errorf("%s: lacks the %s or %s needed to resume exactly", dir, EMAFile, OptimizerFile)
	}
	if ck.Config.Adam.Step != ck.Config.Step {
		return fmt.Errorf("%s: adam.step %d differs from step %d", cfgPath, ck.Config.Adam.Step, ck.Config.Step)
	}
	return nil
}

// PrepareResume picks the checkpoint of runDir that a resume continues and
// makes runDir resume from it: the one Latest names if it passes
// CheckResumable, else the newest older one that does. The step directories
// passed over, and any newer one without a checksums.json (a save never
// leaves one; it would stop the resumed run when it saves that step), are
// renamed to <name>.bad and the latest pointer is set to the one chosen, so
// that Run resumes from it. Complete step directories newer than the
// pointer (it is a human's to move back) are left alone. When no checkpoint
// can be resumed nothing is changed and the error gives each one's problem.
// PrepareResume holds runDir's lock while it works, so it must not be called
// by a process that already holds it.
func PrepareResume(runDir string) (string, []Unusable, error) {
	if err := hasSteps(runDir); err != nil {
		return "", nil, err
	}
	lock, err := dirlock.Acquire(runDir, "checking checkpoints to resume")
	if err != nil {
		return "", nil, err
	}
	defer lock.Release()
	chosen, bad, err := chooseResume(runDir)
	if err != nil {
		return "", bad, err
	}
	for i := range bad {
		to, err := setAside(bad[i].Dir)
		if err != nil {
			return "", bad, err
		}
		bad[i].MovedTo = to
	}
	if b, _ := readBounded(filepath.Join(runDir, LatestFile), 4096); strings.TrimSpace(string(b)) != filepath.Base(chosen) {
		if err := atomicfile.WriteBytes(filepath.Join(runDir, LatestFile), []byte(filepath.Base(chosen)+"\n"), 0o644); err != nil {
			return "", bad, err
		}
	}
	if len(bad) > 0 {
		if err := atomicfile.SyncDir(runDir); err != nil {
			return "", bad, err
		}
	}
	return chosen, bad, nil
}

// FindResume is the checkpoint PrepareResume chooses, without changing
// runDir or taking its lock: for the ranks of a data-parallel run other
// than rank 0, which prepares the run directory while they read it. They
// agree on the checkpoint whether they read before or after rank 0's
// changes, since those only move aside directories that fail the same
// checks and point latest at the one chosen.
func FindResume(runDir string) (string, []Unusable, error) {
	if err := hasSteps(runDir); err != nil {
		return "", nil, err
	}
	return chooseResume(runDir)
}

// hasSteps wraps ErrNoCheckpoint when runDir has no step directories.
func hasSteps(runDir string) error {
	dirs, err := stepDirs(runDir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(dirs) == 0) {
		return fmt.Errorf("run %s: %w", runDir, ErrNoCheckpoint)
	}
	return err
}

// chooseResume is PrepareResume's choice: the checkpoint and the step
// directories passed over, or an error giving each one's problem.
func chooseResume(runDir string) (string, []Unusable, error) {
	dirs, err := stepDirs(runDir)
	if err != nil {
		return "", nil, err
	}
	// The pointer's step bounds the candidates; with no complete checkpoint
	// at all every directory is one.
	limit := int64(-1)
	if latest, err := Latest(runDir); err == nil {
		if m := stepDirRE.FindStringSubmatch(filepath.Base(latest)); m != nil {
			limit, _ = strconv.ParseInt(m[1], 10, 64)
		}
	}
	var bad []Unusable
	for i := len(dirs) - 1; i >= 0; i-- {
		d := filepath.Join(runDir, dirs[i].name)
		if limit >= 0 && dirs[i].step > limit {
			if err := hasManifest(d); err != nil {
				bad = append(bad, Unusable{Dir: d, Err: err})
			}
			continue
		}
		if err := hasManifest(d); err != nil {
			bad = append(bad, Unusable{Dir: d, Err: err})
		} else if err := CheckResumable(d); err != nil {
			bad = append(bad, Unusable{Dir: d, Err: err})
		} else {
			return d, bad, nil
		}
	}
	msgs := make([]string, len(bad))
	for i, u := range bad {
		msgs[i] = u.Err.Error()
	}
	return "", bad, fmt.Errorf("run %s: no checkpoint can be resumed: %s", runDir, strings.Join(msgs, "; "))
}

// hasManifest reports a step directory without checksums.json as an error
// that says what that means.
func hasManifest(dir string) error {
	r, err := resolve(dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(r, ManifestFile)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: no %s (a save always writes one last: the directory is damaged or was not written by a save)", r, ManifestFile)
		}
		return err
	}
	return nil
}

// setAside renames the step directory dir (or the .old copy an interrupted
// save left) to the first free <name>.bad, <name>.bad-2, ...
func setAside(dir string) (string, error) {
	src, err := resolve(dir)
	if err != nil {
		return "", err
	}
	for n := 1; n < 1000; n++ {
		to := dir + BadSuffix
		if n > 1 {
			to += "-" + strconv.Itoa(n)
		}
		if _, err := os.Lstat(to); errors.Is(err, fs.ErrNotExist) {
			if err := os.Rename(src, to); err != nil {
				return "", fmt.Errorf("cannot move %s aside: %w", src, err)
			}
			return to, nil
		}
	}
	return "", fmt.Errorf("cannot move %s aside: %s-1 to -999 all exist", src, dir+BadSuffix)
}
