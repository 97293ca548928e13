package cuda

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	"github.com/wavecat/wavecat/internal/atomicfile"
)

// kernelSource is every kernel the backend launches, compiled as one module.
//
//go:embed kernels.cu
var kernelSource string

// Kernel names launched from Go; TestKernelNamesInSource checks each is
// defined in kernels.cu.
const (
	kScale           = "wc_scale"
	kAxpy            = "wc_axpy"
	kAddScaled       = "wc_add_scaled"
	kReLU            = "wc_relu"
	kReLUBackward    = "wc_relu_backward"
	kDotPartial      = "wc_dot_partial"
	kSumSqPartial    = "wc_sumsq_partial"
	kAddBias         = "wc_add_bias"
	kBiasGrad        = "wc_bias_grad"
	kGated           = "wc_gated"
	kGatedBackward   = "wc_gated_backward"
	kStretch         = "wc_stretch"
	kStretchBackward = "wc_stretch_backward"
	kRowConv         = "wc_row_conv_same"
	kRowConvBwdSrc   = "wc_row_conv_same_backward_src"
	kRowConvBwdW     = "wc_row_conv_same_backward_w"
	kRowConvWFinish  = "wc_row_conv_w_finish"
	kWeightNorm      = "wc_weight_norm"
	kWeightNormBwd   = "wc_weight_norm_backward"
	kAdam            = "wc_adam"
	kEMA             = "wc_ema"
	kGemmScaleC      = "wc_gemm_scale_c"
)

var kernelNames = []string{
	kScale, kAxpy, kAddScaled, kReLU, kReLUBackward, kDotPartial, kSumSqPartial,
	kAddBias, kBiasGrad, kGated, kGatedBackward, kStretch, kStretchBackward,
	kRowConv, kRowConvBwdSrc, kRowConvBwdW, kRowConvWFinish, kWeightNorm, kWeightNormBwd, kAdam, kEMA,
	kGemmScaleC,
}

// kernelSigs gives each kernel's parameter kinds in order: p = pointer,
// l = long long, f = float. launch checks the argument count against it and
// TestKernelSignatures checks it against kernels.cu (and the PTX), so a
// kernel edited on one side only fails here rather than reading garbage on a
// GPU.
var kernelSigs = map[string]string{
	kScale:           "plf",
	kAxpy:            "pplf",
	kAddScaled:       "ppplf",
	kReLU:            "ppl",
	kReLUBackward:    "pppl",
	kDotPartial:      "pplp",
	kSumSqPartial:    "plp",
	kAddBias:         "pplll",
	kBiasGrad:        "pplll",
	kGated:           "ppll",
	kGatedBackward:   "pppll",
	kStretch:         "pplll",
	kStretchBackward: "pplll",
	kRowConv:         "ppplll",
	kRowConvBwdSrc:   "ppplll",
	kRowConvBwdW:     "pppllll",
	kRowConvWFinish:  "ppll",
	kWeightNorm:      "ppplll",
	kWeightNormBwd:   "ppppplll",
	kAdam:            "pppplfffff",
	kEMA:             "pplf",
	kGemmScaleC:      "plllllf",
}

// reductionBlock must equal BLOCK in kernels.cu: the reductions assume a
// block of exactly that many threads.
const reductionBlock = 256

// nvrtcVersionString reports NVRTC's version, e.g. "11.8".
func (n *nvrtcAPI) version() string {
	var major, minor int32
	if n == nil || n.nvrtcVersion == nil || n.nvrtcVersion(&major, &minor) != 0 {
		return "?"
	}
	return fmt.Sprintf("%d.%d", major, minor)
}

// supportedArchs lists the SM versions NVRTC can target (e.g. 52, ..., 90),
// or nil when this NVRTC predates the query (CUDA < 11.2).
func (n *nvrtcAPI) supportedArchs() []int {
	if n.nvrtcGetNumSupportedArchs == nil || n.nvrtcGetSupportedArchs == nil {
		return nil
	}
	var cnt int32
	if n.nvrtcGetNumSupportedArchs(&cnt) != 0 || cnt <= 0 {
		return nil
	}
	a := make([]int32, cnt)
	if n.nvrtcGetSupportedArchs(&a[0]) != 0 {
		return nil
	}
	out := make([]int, cnt)
	for i, v := range a {
		out[i] = int(v)
	}
	return out
}

// pickArch returns the virtual architecture to compile for: the device's
// own when NVRTC knows it, else the newest one NVRTC supports below it (the
// driver JIT-compiles older PTX for newer GPUs).
func pickArch(device int, supported []int) (int, error) {
	if len(supported) == 0 {
		return device, nil
	}
	best := -1
	for _, a := range supported {
		if a <= device && a > best {
			best = a
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("cuda: NVRTC supports sm_%d and newer, the GPU is sm_%d: install an NVRTC matching the GPU", slices.Min(supported), device)
	}
	return best, nil
}

// pickArchAtLeast returns the oldest virtual architecture NVRTC supports at
// or above sm: code behind __CUDA_ARCH__ >= sm*10 compiles there, and a
// compile check should cover the most devices it can.
func pickArchAtLeast(sm int, supported []int) (int, error) {
	if len(supported) == 0 {
		return sm, nil
	}
	best := -1
	for _, a := range supported {
		if a >= sm && (best < 0 || a < best) {
			best = a
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("cuda: this NVRTC does not compile for sm_%d or newer (it supports %v)", sm, supported)
	}
	return best, nil
}

// compile runs NVRTC on src with the given options and returns the PTX. A
// failed compile returns NVRTC's log in the error; a successful one returns
// the log (warnings) too.
func (n *nvrtcAPI) compile(src, name string, opts []string) (ptx []byte, log string, err error) {
	var prog uintptr
	if err := n.check("nvrtcCreateProgram", n.nvrtcCreateProgram(&prog, src, name, 0, nil, nil)); err != nil {
		return nil, "", err
	}
	defer n.nvrtcDestroyProgram(&prog)

	cs := make([]*byte, len(opts))
	for i, o := range opts {
		cs[i] = cString(o)
	}
	var optp unsafe.Pointer
	if len(cs) > 0 {
		optp = unsafe.Pointer(&cs[0])
	}
	res := n.nvrtcCompileProgram(prog, int32(len(cs)), optp)
	runtime.KeepAlive(cs)

	var logSize uint64
	if n.nvrtcGetProgramLogSize(prog, &logSize) == 0 && logSize > 1 {
		b := make([]byte, logSize)
		if n.nvrtcGetProgramLog(prog, &b[0]) == 0 {
			log = strings.TrimRight(string(b[:logSize-1]), "\x00\n ")
		}
	}
	if err := n.check("nvrtcCompileProgram", res); err != nil {
		return nil, log, fmt.Errorf("%w (options %s):\n%s", err, strings.Join(opts, " "), log)
	}
	var size uint64
	if err := n.check("nvrtcGetPTXSize", n.nvrtcGetPTXSize(prog, &size)); err != nil {
		return nil, log, err
	}
	if size == 0 {
		return nil, log, fmt.Errorf("cuda: NVRTC produced no PTX (options %s)", strings.Join(opts, " "))
	}
	ptx = make([]byte, size)
	if err := n.check("nvrtcGetPTX", n.nvrtcGetPTX(prog, &ptx[0])); err != nil {
		return nil, log, err
	}
	return ptx, log, nil
}

// compileOptions are the NVRTC options for one virtual architecture. No
// fast-math: tanh/exp/division stay IEEE-accurate so results match the CPU.
func compileOptions(arch string) []string {
	return []string{"--gpu-architecture=" + arch, "--std=c++14", "-default-device"}
}

// ptxCacheKey names the cached PTX: the source hash, the architecture, and
// the NVRTC and driver versions (a driver update may refuse older or newer
// PTX, and a new NVRTC may generate different code).
func ptxCacheKey(src, arch, nvrtcVersion string, driverVersion int) string {
	h := sha256.Sum256([]byte(src))
	return fmt.Sprintf("%s-%s-nvrtc%s-drv%d.ptx", hex.EncodeToString(h[:12]), arch, nvrtcVersion, driverVersion)
}

// ptxCacheDir is where compiled PTX is kept between runs.
func ptxCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "wavecat", "cuda"), nil
}

// cachedPTX returns the PTX for kernelSource, from the disk cache or a fresh
// NVRTC compile (then stored; a cache that cannot be written is skipped,
// since it only saves time). fromCache says which.
func cachedPTX(n *nvrtcAPI, arch string, driverVersion int) (ptx []byte, fromCache bool, err error) {
	return cachedPTXOf(n, kernelSource, "wavecat_kernels.cu", arch, driverVersion)
}

// cachedPTXOf is cachedPTX for any source (the modules of Compile).
func cachedPTXOf(n *nvrtcAPI, src, name, arch string, driverVersion int) (ptx []byte, fromCache bool, err error) {
	dir, derr := ptxCacheDir()
	var path string
	if derr == nil {
		path = filepath.Join(dir, ptxCacheKey(src, arch, n.version(), driverVersion))
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return b, true, nil
		}
	}
	ptx, _, err = n.compile(src, name, compileOptions(arch))
	if err != nil {
		return nil, false, err
	}
	if path != "" {
		if err := os.MkdirAll(dir, 0o755); err == nil {
			_ = atomicfile.WriteBytes(path, ptx, 0o644)
		}
	}
	return ptx, false, nil
}
