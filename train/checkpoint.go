package train

// Checkpoints.
//
// A checkpoint is a directory:
//
//	config.json            Meta: model/head/mel/stats (opaque JSON), step, seed, RNG, data position
//	model.safetensors      weights
//	ema.safetensors        EMA weights, same names (optional)
//	optimizer.safetensors  Adam state, "<name>.exp_avg" / "<name>.exp_avg_sq" (optional)
//	checksums.json         SHA-256 and size of every file above, written last
//
// Crash safety (Save): the whole directory is built in a temporary sibling
// ".<base>.tmp-*", every file and the directory are fsynced, then it is swapped
// in with two renames: dir -> dir.old, tmp -> dir, then dir.old is removed.
// Linux cannot rename a directory over a non-empty one, hence the two steps. At
// every instant one of dir or dir.old is a complete checkpoint: Load falls
// back to dir.old when dir is missing, and the next Save repairs the state.
//
// Runs (SaveStep/Latest/Prune) keep one such directory per step,
// runDir/step-000100000, plus a "latest" pointer file replaced atomically for
// humans and scripts. Latest trusts the pointer only if it names a complete
// directory; otherwise it takes the highest complete step directory.
//
// A single writer per directory is assumed (one training process).

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/wavecat/wavecat/internal/atomicfile"
)

// FormatVersion is the checkpoint format this package writes and reads.
const FormatVersion = 1

// File names inside a checkpoint directory.
const (
	ConfigFile    = "config.json"
	WeightsFile   = "model.safetensors"
	EMAFile       = "ema.safetensors"
	OptimizerFile = "optimizer.safetensors"
	ManifestFile  = "checksums.json"
)

// Meta is config.json. The model, head, mel and stats sections are opaque
// here (their packages own the types), except that the loaders check a model
// section against the weights before trusting it (untrusted.go); the fields
// the training loop needs to resume exactly are typed.
type Meta struct {
	Format int             `json:"format"`
	Model  json.RawMessage `json:"model,omitempty"`
	Head   json.RawMessage `json:"head,omitempty"`
	Mel    json.RawMessage `json:"mel,omitempty"`
	Stats  json.RawMessage `json:"stats,omitempty"` // normalisation statistics

	Step     int64        `json:"step"` // completed optimizer steps
	Seed     uint64       `json:"seed"`
	RNGState []byte       `json:"rng_state,omitempty"` // serialised RNG (base64 in JSON)
	Data     DataPosition `json:"data"`

	Adam     AdamState `json:"adam"`
	Schedule Schedule  `json:"schedule"`
	EMADecay float64   `json:"ema_decay,omitempty"`

	// Extra is for anything else the loop must restore (free-form JSON).
	Extra json.RawMessage `json:"extra,omitempty"`
}

// DataPosition is where the data loader stands: epoch, next item within the
// epoch's order, and the seed of that epoch's shuffle.
type DataPosition struct {
	Epoch       int64  `json:"epoch"`
	Index       int64  `json:"index"`
	ShuffleSeed uint64 `json:"shuffle_seed,omitempty"`
}

// AdamState is the optimizer's scalar state; its m and v live in
// optimizer.safetensors.
type AdamState struct {
	AdamConfig
	Step int64 `json:"step"`
}

// Checkpoint is everything in a checkpoint directory. EMA and Optimizer may
// be nil (then their files are not written).
type Checkpoint struct {
	Config    Meta
	Weights   []Tensor
	EMA       []Tensor
	Optimizer []Tensor
}

// Manifest is checksums.json.
type Manifest struct {
	Format    int                `json:"format"`
	Algorithm string             `json:"algorithm"`
	Files     map[string]FileSum `json:"files"`
}

// FileSum records one file's size and SHA-256 (hex).
type FileSum struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

const (
	maxConfigSize   = 64 << 20
	maxManifestSize = 1 << 20
	optStepKey      = "step"
)

// saveHook lets tests inject failures (error) or crashes (panic: deferred
// cleanups do not run because err is still nil) at named stages of Save.
var saveHook func(stage string) error

func hook(stage string) error {
	if saveHook != nil {
		return saveHook(stage)
	}
	return nil
}

// Save writes ck to dir atomically (see the package notes): after a crash at
// any point, Load(dir) returns either the previous checkpoint or ck.
func Save(dir string, ck *Checkpoint) (err error) {
	dir = filepath.Clean(dir)
	if err := validateCheckpoint(ck); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	meta := ck.Config
	meta.Format = FormatVersion
	cfg, err := json.MarshalIndent(&meta, "", "  ")
	if err != nil {
		return fmt.Errorf("save %s: %s: %w", dir, ConfigFile, err)
	}
	cfg = append(cfg, '\n')

	parent, base := filepath.Split(dir)
	if parent == "" {
		parent = "."
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if err := repair(dir); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if err := replaceable(dir); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-")
	if err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()

	man := Manifest{Format: FormatVersion, Algorithm: "sha256", Files: map[string]FileSum{}}
	write := func(name string, fill func(w io.Writer) error) error {
		h := sha256.New()
		var size int64
		err := atomicfile.Write(filepath.Join(tmp, name), 0o644, func(w io.Writer) error {
			cw := &countWriter{w: io.MultiWriter(w, h)}
			err := fill(cw)
			size = cw.n
			return err
		})
		if err != nil {
			return err
		}
		man.Files[name] = FileSum{Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}
		return hook("wrote " + name)
	}
	st := func(ts []Tensor, md map[string]string) func(w io.Writer) error {
		return func(w io.Writer) error { return WriteSafetensors(w, ts, md) }
	}
	if err = write(ConfigFile, func(w io.Writer) error { _, e := w.Write(cfg); return e }); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	fmtMeta := map[string]string{"format": "wavecat-checkpoint-" + strconv.Itoa(FormatVersion)}
	if err = write(WeightsFile, st(ck.Weights, fmtMeta)); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if ck.EMA != nil {
		if err = write(EMAFile, st(ck.EMA, fmtMeta)); err != nil {
			return fmt.Errorf("save %s: %w", dir, err)
		}
	}
	if ck.Optimizer != nil {
		md := map[string]string{"format": fmtMeta["format"], optStepKey: strconv.FormatInt(meta.Adam.Step, 10)}
		if err = write(OptimizerFile, st(ck.Optimizer, md)); err != nil {
			return fmt.Errorf("save %s: %w", dir, err)
		}
	}
	mb, err := json.MarshalIndent(&man, "", "  ")
	if err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if err = atomicfile.WriteBytes(filepath.Join(tmp, ManifestFile), append(mb, '\n'), 0o644); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if err = atomicfile.SyncDir(tmp); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if err = hook("built"); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}

	// Swap. From here on a failure leaves dir or dir.old complete.
	old := dir + ".old"
	hadOld := false
	if _, serr := os.Lstat(dir); serr == nil {
		if err = os.Rename(dir, old); err != nil {
			return fmt.Errorf("save %s: move previous checkpoint aside: %w", dir, err)
		}
		hadOld = true
		if err = hook("moved old"); err != nil {
			return fmt.Errorf("save %s: %w", dir, err)
		}
	}
	if err = os.Rename(tmp, dir); err != nil {
		if hadOld {
			os.Rename(old, dir) // best effort: put the previous one back
		}
		return fmt.Errorf("save %s: move new checkpoint into place: %w", dir, err)
	}
	if err = atomicfile.SyncDir(parent); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if err = hook("swapped"); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if hadOld {
		if err = os.RemoveAll(old); err != nil {
			return fmt.Errorf("save %s: remove previous checkpoint %s: %w", dir, old, err)
		}
		atomicfile.SyncDir(parent)
	}
	return nil
}

// repair finishes an interrupted swap and removes stale temporaries of dir.
func repair(dir string) error {
	old := dir + ".old"
	_, derr := os.Lstat(dir)
	_, oerr := os.Lstat(old)
	switch {
	case derr != nil && oerr == nil:
		// Crashed between the two renames: dir.old is the only complete copy.
		if err := os.Rename(old, dir); err != nil {
			return fmt.Errorf("restore %s: %w", old, err)
		}
	case derr == nil && oerr == nil:
		// Crashed after the swap: dir is complete, dir.old is garbage.
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("remove stale %s: %w", old, err)
		}
	}
	parent, base := filepath.Split(dir)
	if parent == "" {
		parent = "."
	}
	stale, _ := filepath.Glob(filepath.Join(parent, "."+escapeGlob(base)+".tmp-*"))
	for _, s := range stale {
		if err := os.RemoveAll(s); err != nil {
			return fmt.Errorf("remove stale %s: %w", s, err)
		}
	}
	return nil
}

// replaceable refuses to swap out anything but a checkpoint directory (or an
// empty one), so a mistyped path never gets a user's directory deleted.
func replaceable(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("exists and is not a directory")
	}
	if _, err := os.Lstat(filepath.Join(dir, ManifestFile)); err == nil {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("exists, is not empty and has no %s: not a checkpoint, refusing to replace it", ManifestFile)
	}
	return nil
}

func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func validateCheckpoint(ck *Checkpoint) error {
	if ck == nil {
		return errors.New("nil checkpoint")
	}
	if err := validateTensors(ck.Weights); err != nil {
		return fmt.Errorf("%s: %w", WeightsFile, err)
	}
	if ck.EMA != nil {
		if err := validateTensors(ck.EMA); err != nil {
			return fmt.Errorf("%s: %w", EMAFile, err)
		}
		if err := CheckTensors(ck.EMA, Shapes(ck.Weights)); err != nil {
			return fmt.Errorf("%s does not match the weights: %w", EMAFile, err)
		}
	}
	if ck.Optimizer != nil {
		if err := validateTensors(ck.Optimizer); err != nil {
			return fmt.Errorf("%s: %w", OptimizerFile, err)
		}
		if err := CheckTensors(ck.Optimizer, adamShapes(ck.Weights)); err != nil {
			return fmt.Errorf("%s does not match the weights (want <name>%s and <name>%s per weight): %w", OptimizerFile, ExpAvgSuffix, ExpAvgSqSuffix, err)
		}
	}
	for name, raw := range map[string]json.RawMessage{"model": ck.Config.Model, "head": ck.Config.Head, "mel": ck.Config.Mel, "stats": ck.Config.Stats, "extra": ck.Config.Extra} {
		if len(raw) > 0 && !json.Valid(raw) {
			return fmt.Errorf("%s: section %q is not valid JSON", ConfigFile, name)
		}
	}
	return nil
}

// Shapes returns the name -> shape table of ts (for CheckTensors).
func Shapes(ts []Tensor) map[string][]int {
	m := make(map[string][]int, len(ts))
	for _, t := range ts {
		m[t.Name] = t.Shape
	}
	return m
}

// resolve returns dir, or dir.old when an interrupted Save left only that.
func resolve(dir string) (string, error) {
	dir = filepath.Clean(dir)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	old := dir + ".old"
	if fi, err := os.Stat(old); err == nil && fi.IsDir() {
		return old, nil
	}
	return "", fmt.Errorf("checkpoint %s: no such directory", dir)
}

// verified reads checkpoint files after checking them against the manifest.
type verified struct {
	dir string
	man Manifest
}

func openVerified(dir string) (*verified, error) {
	d, err := resolve(dir)
	if err != nil {
		return nil, err
	}
	mp := filepath.Join(d, ManifestFile)
	data, err := readBounded(mp, maxManifestSize)
	if err != nil {
		return nil, err
	}
	man, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", mp, err)
	}
	// A checkpoint file on disk but absent from the manifest is unverifiable.
	for _, name := range []string{EMAFile, OptimizerFile} {
		if _, ok := man.Files[name]; !ok {
			if _, err := os.Lstat(filepath.Join(d, name)); err == nil {
				return nil, fmt.Errorf("%s: present but not listed in %s", filepath.Join(d, name), ManifestFile)
			}
		}
	}
	return &verified{dir: d, man: man}, nil
}

// has reports whether the manifest lists name.
func (v *verified) has(name string) bool { _, ok := v.man.Files[name]; return ok }

// open opens name, listed in the manifest, and checks its size against it,
// so that no caller reads a file whose size the manifest does not vouch for.
func (v *verified) open(name string) (f *os.File, path string, want FileSum, err error) {
	path = filepath.Join(v.dir, name)
	want, ok := v.man.Files[name]
	if !ok {
		return nil, path, want, fmt.Errorf("%s: not listed in %s", path, ManifestFile)
	}
	if f, err = os.Open(path); err != nil {
		return nil, path, want, fmt.Errorf("%s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, path, want, fmt.Errorf("%s: %w", path, err)
	}
	if fi.Size() != want.Size {
		f.Close()
		return nil, path, want, fmt.Errorf("%s: size %d bytes, manifest says %d (truncated or replaced)", path, fi.Size(), want.Size)
	}
	return f, path, want, nil
}

// read returns the bytes of name after checking its size (before reading,
// so a bogus file never drives a huge read) and SHA-256.
func (v *verified) read(name string) ([]byte, error) {
	f, p, want, err := v.open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if name == ConfigFile && want.Size > maxConfigSize {
		return nil, fmt.Errorf("%s: %d bytes, larger than the %d a config can be", p, want.Size, maxConfigSize)
	}
	data := make([]byte, want.Size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != want.SHA256 {
		return nil, fmt.Errorf("%s: SHA-256 mismatch with %s (corrupted file)", p, ManifestFile)
	}
	return data, nil
}

func (v *verified) meta() (Meta, error) {
	data, err := v.read(ConfigFile)
	if err != nil {
		return Meta{}, err
	}
	m, err := ParseMeta(data)
	if err != nil {
		return Meta{}, fmt.Errorf("%s: %w", filepath.Join(v.dir, ConfigFile), err)
	}
	return m, nil
}

func (v *verified) tensors(name string) ([]Tensor, map[string]string, error) {
	data, err := v.read(name)
	if err != nil {
		return nil, nil, err
	}
	ts, md, err := ParseSafetensors(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", filepath.Join(v.dir, name), err)
	}
	return ts, md, nil
}

func readBounded(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", p, limit)
	}
	return data, nil
}

// ParseManifest decodes checksums.json strictly.
func ParseManifest(data []byte) (Manifest, error) {
	var m Manifest
	if err := strictUnmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("invalid manifest: %v", err)
	}
	if m.Format != FormatVersion {
		return Manifest{}, fmt.Errorf("unsupported manifest format %d (this build reads %d)", m.Format, FormatVersion)
	}
	if m.Algorithm != "sha256" {
		return Manifest{}, fmt.Errorf("unsupported checksum algorithm %q", m.Algorithm)
	}
	for _, req := range []string{ConfigFile, WeightsFile} {
		if _, ok := m.Files[req]; !ok {
			return Manifest{}, fmt.Errorf("manifest does not list %s", req)
		}
	}
	for name, f := range m.Files {
		switch name {
		case ConfigFile, WeightsFile, EMAFile, OptimizerFile:
		default:
			return Manifest{}, fmt.Errorf("manifest lists unknown file %q", name)
		}
		if f.Size < 0 {
			return Manifest{}, fmt.Errorf("manifest: %s has negative size %d", name, f.Size)
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != sha256.Size {
			return Manifest{}, fmt.Errorf("manifest: %s has a malformed sha256 %q", name, f.SHA256)
		}
	}
	return m, nil
}

// ParseMeta decodes config.json strictly (unknown fields are errors) and
// checks the format version.
func ParseMeta(data []byte) (Meta, error) {
	var m Meta
	if err := strictUnmarshal(data, &m); err != nil {
		return Meta{}, fmt.Errorf("invalid config: %v", err)
	}
	if m.Format != FormatVersion {
		return Meta{}, fmt.Errorf("unsupported checkpoint format %d (this build reads %d)", m.Format, FormatVersion)
	}
	if m.Step < 0 || m.Adam.Step < 0 || m.Data.Epoch < 0 || m.Data.Index < 0 {
		return Meta{}, errors.New("invalid config: negative step, epoch or index")
	}
	return m, nil
}

// Load reads and verifies a whole checkpoint: every file's checksum, the
// format version, every safetensors header, that EMA matches the weights, and
// that the optimizer file's step matches config.json. When config.json
// describes a model, the description must be within wavenet's limits and
// the weights must be exactly the tensors it implies; that is checked on the
// header before any tensor data is read (see untrusted.go).
func Load(dir string) (*Checkpoint, error) {
	v, err := openVerified(dir)
	if err != nil {
		return nil, err
	}
	ck := &Checkpoint{}
	if ck.Config, err = v.meta(); err != nil {
		return nil, err
	}
	if err := v.checkModel(ck.Config, WeightsFile); err != nil {
		return nil, err
	}
	if ck.Weights, _, err = v.tensors(WeightsFile); err != nil {
		return nil, err
	}
	if v.has(EMAFile) {
		if ck.EMA, _, err = v.tensors(EMAFile); err != nil {
			return nil, err
		}
		if err := CheckTensors(ck.EMA, Shapes(ck.Weights)); err != nil {
			return nil, fmt.Errorf("%s: does not match %s: %w", filepath.Join(v.dir, EMAFile), WeightsFile, err)
		}
	}
	if v.has(OptimizerFile) {
		var md map[string]string
		if ck.Optimizer, md, err = v.tensors(OptimizerFile); err != nil {
			return nil, err
		}
		if err := CheckTensors(ck.Optimizer, adamShapes(ck.Weights)); err != nil {
			return nil, fmt.Errorf("%s: does not match %s: %w", filepath.Join(v.dir, OptimizerFile), WeightsFile, err)
		}
		if s := md[optStepKey]; s != strconv.FormatInt(ck.Config.Adam.Step, 10) {
			return nil, fmt.Errorf("%s: step %q disagrees with %s adam.step %d", filepath.Join(v.dir, OptimizerFile), s, ConfigFile, ck.Config.Adam.Step)
		}
	}
	return ck, nil
}

// LoadWeightsOnly reads config.json and the weights (the EMA weights when
// ema is true, as shipped for synthesis), verifying only those files. A
// config.json that describes a model must describe it completely and
// sensibly (ModelInfo.Validate: shape, head, preprocessing, statistics) and
// match the tensors' headers, all before the tensor data is read.
func LoadWeightsOnly(dir string, ema bool) ([]Tensor, Meta, error) {
	v, err := openVerified(dir)
	if err != nil {
		return nil, Meta{}, err
	}
	meta, err := v.meta()
	if err != nil {
		return nil, Meta{}, err
	}
	name := WeightsFile
	if ema {
		name = EMAFile
		if !v.has(EMAFile) {
			return nil, Meta{}, fmt.Errorf("checkpoint %s: has no %s (saved without EMA weights)", v.dir, EMAFile)
		}
	}
	if len(meta.Model) > 0 {
		if err := v.checkModel(meta, name); err != nil {
			return nil, Meta{}, err
		}
		if err := validateInfo(meta); err != nil {
			return nil, Meta{}, fmt.Errorf("%s: %w", filepath.Join(v.dir, ConfigFile), err)
		}
	}
	ts, _, err := v.tensors(name)
	if err != nil {
		return nil, Meta{}, err
	}
	return ts, meta, nil
}

// --- runs: one directory per step ---

// LatestFile is the pointer file in a run directory.
const LatestFile = "latest"

var stepDirRE = regexp.MustCompile(`^step-([0-9]{9,})(\.old)?$`)

// StepDir is the checkpoint directory of step in runDir.
func StepDir(runDir string, step int64) string {
	return filepath.Join(runDir, fmt.Sprintf("step-%09d", step))
}

// SaveStep saves ck as runDir/step-NNNNNNNNN (ck.Config.Step) and then points
// runDir/latest at it. It returns the directory written.
func SaveStep(runDir string, ck *Checkpoint) (string, error) {
	if ck == nil {
		return "", fmt.Errorf("save in %s: nil checkpoint", runDir)
	}
	if ck.Config.Step < 0 {
		return "", fmt.Errorf("save in %s: negative step %d", runDir, ck.Config.Step)
	}
	dir := StepDir(runDir, ck.Config.Step)
	if err := Save(dir, ck); err != nil {
		return "", err
	}
	if err := atomicfile.WriteBytes(filepath.Join(runDir, LatestFile), []byte(filepath.Base(dir)+"\n"), 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

type stepEntry struct {
	step int64
	name string
}

// stepDirs lists complete step checkpoints (those with a manifest) in step
// order; a step whose directory is mid-swap counts through its .old copy.
func stepDirs(runDir string) ([]stepEntry, error) {
	ents, err := os.ReadDir(runDir)
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", runDir, err)
	}
	var out []stepEntry
	seen := map[int64]bool{}
	for _, e := range ents {
		m := stepDirRE.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		s, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, stepEntry{s, "step-" + m[1]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].step < out[j].step })
	return out, nil
}

// Latest returns the newest checkpoint directory of runDir: the one named by
// runDir/latest if it exists, else (pointer missing or stale after a crash)
// the highest-numbered step directory.
func Latest(runDir string) (string, error) {
	if b, err := readBounded(filepath.Join(runDir, LatestFile), 4096); err == nil {
		name := strings.TrimSpace(string(b))
		if m := stepDirRE.FindStringSubmatch(name); m != nil && m[2] == "" {
			if d, err := resolve(filepath.Join(runDir, name)); err == nil {
				if _, err := os.Stat(filepath.Join(d, ManifestFile)); err == nil {
					return filepath.Join(runDir, name), nil
				}
			}
		}
	}
	dirs, err := stepDirs(runDir)
	if err != nil {
		return "", err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		d := filepath.Join(runDir, dirs[i].name)
		if r, err := resolve(d); err == nil {
			if _, err := os.Stat(filepath.Join(r, ManifestFile)); err == nil {
				return d, nil
			}
		}
	}
	return "", fmt.Errorf("run %s: no checkpoint found", runDir)
}

// Prune keeps the keep most recent step checkpoints of runDir (and always the
// one runDir/latest names) and removes the older ones.
func Prune(runDir string, keep int) error {
	if keep < 1 {
		return fmt.Errorf("prune %s: keep must be at least 1, got %d", runDir, keep)
	}
	dirs, err := stepDirs(runDir)
	if err != nil {
		return err
	}
	latest := ""
	if b, err := readBounded(filepath.Join(runDir, LatestFile), 4096); err == nil {
		latest = strings.TrimSpace(string(b))
	}
	for i := 0; i < len(dirs)-keep; i++ {
		if dirs[i].name == latest {
			continue
		}
		d := filepath.Join(runDir, dirs[i].name)
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("prune %s: %w", d, err)
		}
		os.RemoveAll(d + ".old")
	}
	return atomicfile.SyncDir(runDir)
}

// Equal reports whether two tensor lists are identical bit for bit (NaN
// payloads included), in the same order.
func Equal(a, b []Tensor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !slices.Equal(a[i].Shape, b[i].Shape) || len(a[i].Data) != len(b[i].Data) {
			return false
		}
		for j := range a[i].Data {
			if math.Float32bits(a[i].Data[j]) != math.Float32bits(b[i].Data[j]) {
				return false
			}
		}
	}
	return true
}
