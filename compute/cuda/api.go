package cuda

import (
	"fmt"
	"sync"
	"unsafe"
)

// cuResult is the driver API's CUresult.
type cuResult int32

// Driver API constants used here (values from cuda.h, stable since CUDA 4).
const (
	cuSuccess           cuResult = 0
	cuErrorNoDevice     cuResult = 100
	cuErrorOutOfMemory  cuResult = 2
	cuStreamNonBlocking          = 1
	attrComputeCapMajor          = 75
	attrComputeCapMinor          = 76
	attrMultiprocessors          = 16
)

// driverAPI holds libcuda's entry points. Versioned names (_v2) are the ones
// cuda.h maps the plain names to since CUDA 4/11; binding the plain symbol
// would get the legacy 32-bit-pointer ABI.
type driverAPI struct {
	lib *library

	cuInit                    func(flags uint32) cuResult
	cuDriverGetVersion        func(v *int32) cuResult
	cuDeviceGetCount          func(n *int32) cuResult
	cuDeviceGet               func(d *int32, ordinal int32) cuResult
	cuDeviceGetName           func(name *byte, n int32, d int32) cuResult
	cuDeviceGetAttribute      func(v *int32, attr int32, d int32) cuResult
	cuDeviceTotalMem          func(b *uint64, d int32) cuResult
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, d int32) cuResult
	cuDevicePrimaryCtxRelease func(d int32) cuResult
	cuCtxSetCurrent           func(ctx uintptr) cuResult
	cuStreamCreate            func(s *uintptr, flags uint32) cuResult
	cuStreamDestroy           func(s uintptr) cuResult
	cuStreamSynchronize       func(s uintptr) cuResult
	cuMemAlloc                func(p *uint64, size uint64) cuResult
	cuMemFree                 func(p uint64) cuResult
	cuMemHostAlloc            func(p *unsafe.Pointer, size uint64, flags uint32) cuResult
	cuMemFreeHost             func(p unsafe.Pointer) cuResult
	cuMemcpyHtoDAsync         func(dst uint64, src unsafe.Pointer, size uint64, s uintptr) cuResult
	cuMemcpyDtoHAsync         func(dst unsafe.Pointer, src uint64, size uint64, s uintptr) cuResult
	cuMemcpyDtoDAsync         func(dst, src uint64, size uint64, s uintptr) cuResult
	cuMemsetD32Async          func(dst uint64, v uint32, n uint64, s uintptr) cuResult
	cuModuleLoadData          func(m *uintptr, image unsafe.Pointer) cuResult
	cuModuleUnload            func(m uintptr) cuResult
	cuModuleGetFunction       func(f *uintptr, m uintptr, name string) cuResult
	cuLaunchKernel            func(f uintptr, gx, gy, gz, bx, by, bz, shmem uint32, s uintptr, params unsafe.Pointer, extra unsafe.Pointer) cuResult
	cuGetErrorName            func(r cuResult, s *unsafe.Pointer) cuResult

	// Occupancy (optional: CoResidentBlocks reports 0 without it).
	cuOccupancyMaxActiveBlocksPerMultiprocessor func(n *int32, f uintptr, block int32, shmem uint64) cuResult

	// Thread-block clusters (CUDA 12.0 and newer; optional:
	// CoResidentClusters reports 0 without them). config is a
	// cuLaunchConfig.
	cuLaunchKernelEx             func(config unsafe.Pointer, f uintptr, params unsafe.Pointer, extra unsafe.Pointer) cuResult
	cuFuncSetAttribute           func(f uintptr, attr int32, v int32) cuResult
	cuOccupancyMaxActiveClusters func(n *int32, f uintptr, config unsafe.Pointer) cuResult

	// CUDA graphs (optional: Capture reports their absence).
	cuStreamBeginCapture        func(s uintptr, mode int32) cuResult
	cuStreamEndCapture          func(s uintptr, g *uintptr) cuResult
	cuGraphInstantiateWithFlags func(e *uintptr, g uintptr, flags uint64) cuResult
	cuGraphLaunch               func(e uintptr, s uintptr) cuResult
	cuGraphExecDestroy          func(e uintptr) cuResult
	cuGraphDestroy              func(g uintptr) cuResult
}

func (d *driverAPI) symbols() []symbol {
	return []symbol{
		{"cuInit", &d.cuInit, false},
		{"cuDriverGetVersion", &d.cuDriverGetVersion, false},
		{"cuDeviceGetCount", &d.cuDeviceGetCount, false},
		{"cuDeviceGet", &d.cuDeviceGet, false},
		{"cuDeviceGetName", &d.cuDeviceGetName, false},
		{"cuDeviceGetAttribute", &d.cuDeviceGetAttribute, false},
		{"cuDeviceTotalMem_v2", &d.cuDeviceTotalMem, false},
		{"cuDevicePrimaryCtxRetain", &d.cuDevicePrimaryCtxRetain, false},
		{"cuDevicePrimaryCtxRelease_v2", &d.cuDevicePrimaryCtxRelease, false},
		{"cuCtxSetCurrent", &d.cuCtxSetCurrent, false},
		{"cuStreamCreate", &d.cuStreamCreate, false},
		{"cuStreamDestroy_v2", &d.cuStreamDestroy, false},
		{"cuStreamSynchronize", &d.cuStreamSynchronize, false},
		{"cuMemAlloc_v2", &d.cuMemAlloc, false},
		{"cuMemFree_v2", &d.cuMemFree, false},
		{"cuMemHostAlloc", &d.cuMemHostAlloc, false},
		{"cuMemFreeHost", &d.cuMemFreeHost, false},
		{"cuMemcpyHtoDAsync_v2", &d.cuMemcpyHtoDAsync, false},
		{"cuMemcpyDtoHAsync_v2", &d.cuMemcpyDtoHAsync, false},
		{"cuMemcpyDtoDAsync_v2", &d.cuMemcpyDtoDAsync, false},
		{"cuMemsetD32Async", &d.cuMemsetD32Async, false},
		{"cuModuleLoadData", &d.cuModuleLoadData, false},
		{"cuModuleUnload", &d.cuModuleUnload, false},
		{"cuModuleGetFunction", &d.cuModuleGetFunction, false},
		{"cuLaunchKernel", &d.cuLaunchKernel, false},
		{"cuGetErrorName", &d.cuGetErrorName, false},
		{"cuOccupancyMaxActiveBlocksPerMultiprocessor", &d.cuOccupancyMaxActiveBlocksPerMultiprocessor, true},
		{"cuLaunchKernelEx", &d.cuLaunchKernelEx, true},
		{"cuFuncSetAttribute", &d.cuFuncSetAttribute, true},
		{"cuOccupancyMaxActiveClusters", &d.cuOccupancyMaxActiveClusters, true},
		{"cuStreamBeginCapture_v2", &d.cuStreamBeginCapture, true},
		{"cuStreamEndCapture", &d.cuStreamEndCapture, true},
		{"cuGraphInstantiateWithFlags", &d.cuGraphInstantiateWithFlags, true},
		{"cuGraphLaunch", &d.cuGraphLaunch, true},
		{"cuGraphExecDestroy", &d.cuGraphExecDestroy, true},
		{"cuGraphDestroy", &d.cuGraphDestroy, true},
	}
}

// check turns a CUresult into an error naming the call and the driver's
// name for the code (CUDA_ERROR_...).
func (d *driverAPI) check(call string, r cuResult) error {
	if r == cuSuccess {
		return nil
	}
	return &Error{Call: call, Code: int(r), Name: d.errorName(r)}
}

func (d *driverAPI) errorName(r cuResult) string {
	if d != nil && d.cuGetErrorName != nil {
		var p unsafe.Pointer
		if d.cuGetErrorName(r, &p) == cuSuccess && p != nil {
			return goString(p)
		}
	}
	return fmt.Sprintf("CUresult %d", int(r))
}

// Error is a failed CUDA, cuBLAS or NVRTC call.
type Error struct {
	Call string // e.g. "cuMemAlloc_v2"
	Code int
	Name string // e.g. "CUDA_ERROR_OUT_OF_MEMORY"
}

func (e *Error) Error() string {
	return fmt.Sprintf("cuda: %s failed: %s (%d)", e.Call, e.Name, e.Code)
}

// goString copies a NUL-terminated C string.
func goString(p unsafe.Pointer) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(p, n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(p), n))
}

// cString returns a NUL-terminated copy of s.
func cString(s string) *byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return &b[0]
}

// cublasStatus is cuBLAS's status code.
type cublasStatus int32

// cublasStatusNames are cublas_api.h's names; cublasGetStatusName only
// exists from CUDA 11.4, so the table covers older libraries.
var cublasStatusNames = map[cublasStatus]string{
	0:  "CUBLAS_STATUS_SUCCESS",
	1:  "CUBLAS_STATUS_NOT_INITIALIZED",
	3:  "CUBLAS_STATUS_ALLOC_FAILED",
	7:  "CUBLAS_STATUS_INVALID_VALUE",
	8:  "CUBLAS_STATUS_ARCH_MISMATCH",
	11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR",
	15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// cuBLAS constants (cublas_api.h).
const (
	cublasOpN            = 0
	cublasOpT            = 1
	cublasDefaultMath    = 0
	cublasTF32TensorMath = 3
	cublasStatusSuccess  = 0
)

// cublasAPI holds libcublas's entry points (the _v2 API of cublas_v2.h).
type cublasAPI struct {
	lib *library

	cublasCreate              func(h *uintptr) cublasStatus
	cublasDestroy             func(h uintptr) cublasStatus
	cublasSetStream           func(h uintptr, s uintptr) cublasStatus
	cublasSetMathMode         func(h uintptr, mode int32) cublasStatus
	cublasGetVersion          func(h uintptr, v *int32) cublasStatus
	cublasSgemm               func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32) cublasStatus
	cublasSgemmStridedBatched func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uint64, lda int32, sa int64, b uint64, ldb int32, sb int64, beta *float32, c uint64, ldc int32, sc int64, batch int32) cublasStatus
	cublasSgemmBatched        func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32, batch int32) cublasStatus
}

func (c *cublasAPI) symbols() []symbol {
	return []symbol{
		{"cublasCreate_v2", &c.cublasCreate, false},
		{"cublasDestroy_v2", &c.cublasDestroy, false},
		{"cublasSetStream_v2", &c.cublasSetStream, false},
		{"cublasSetMathMode", &c.cublasSetMathMode, false},
		{"cublasGetVersion_v2", &c.cublasGetVersion, false},
		{"cublasSgemm_v2", &c.cublasSgemm, false},
		{"cublasSgemmStridedBatched", &c.cublasSgemmStridedBatched, false},
		{"cublasSgemmBatched", &c.cublasSgemmBatched, false},
	}
}

func (c *cublasAPI) check(call string, s cublasStatus) error {
	if s == cublasStatusSuccess {
		return nil
	}
	name, ok := cublasStatusNames[s]
	if !ok {
		name = fmt.Sprintf("cublasStatus %d", int(s))
	}
	return &Error{Call: call, Code: int(s), Name: name}
}

// nvrtcAPI holds libnvrtc's entry points.
type nvrtcAPI struct {
	lib *library

	nvrtcVersion              func(major, minor *int32) int32
	nvrtcGetErrorString       func(r int32) string
	nvrtcCreateProgram        func(prog *uintptr, src string, name string, numHeaders int32, headers, includeNames unsafe.Pointer) int32
	nvrtcCompileProgram       func(prog uintptr, numOptions int32, options unsafe.Pointer) int32
	nvrtcGetProgramLogSize    func(prog uintptr, size *uint64) int32
	nvrtcGetProgramLog        func(prog uintptr, log *byte) int32
	nvrtcGetPTXSize           func(prog uintptr, size *uint64) int32
	nvrtcGetPTX               func(prog uintptr, ptx *byte) int32
	nvrtcDestroyProgram       func(prog *uintptr) int32
	nvrtcGetNumSupportedArchs func(n *int32) int32     // CUDA 11.2+
	nvrtcGetSupportedArchs    func(archs *int32) int32 // CUDA 11.2+
}

func (n *nvrtcAPI) symbols() []symbol {
	return []symbol{
		{"nvrtcVersion", &n.nvrtcVersion, false},
		{"nvrtcGetErrorString", &n.nvrtcGetErrorString, false},
		{"nvrtcCreateProgram", &n.nvrtcCreateProgram, false},
		{"nvrtcCompileProgram", &n.nvrtcCompileProgram, false},
		{"nvrtcGetProgramLogSize", &n.nvrtcGetProgramLogSize, false},
		{"nvrtcGetProgramLog", &n.nvrtcGetProgramLog, false},
		{"nvrtcGetPTXSize", &n.nvrtcGetPTXSize, false},
		{"nvrtcGetPTX", &n.nvrtcGetPTX, false},
		{"nvrtcDestroyProgram", &n.nvrtcDestroyProgram, false},
		{"nvrtcGetNumSupportedArchs", &n.nvrtcGetNumSupportedArchs, true},
		{"nvrtcGetSupportedArchs", &n.nvrtcGetSupportedArchs, true},
	}
}

func (n *nvrtcAPI) check(call string, r int32) error {
	if r == 0 {
		return nil
	}
	return &Error{Call: call, Code: int(r), Name: n.nvrtcGetErrorString(r)}
}

// Loaded libraries are process-wide: dlopen is reference counted and
// purego registrations cannot be undone, so each library is bound once. A
// failure is not remembered: after fixing the environment (installing a
// library, setting WAVECAT_CUDA_LIBS) a later New tries again.
var (
	loadMu    sync.Mutex
	driverLib *driverAPI
	cublasLib *cublasAPI
	nvrtcLib  *nvrtcAPI
)

func loadDriver() (*driverAPI, error) {
	loadMu.Lock()
	defer loadMu.Unlock()
	if driverLib == nil {
		lib, err := load(libCUDA, searchDirs(osSearchEnv), true, systemDlopen)
		if err != nil {
			return nil, err
		}
		d := &driverAPI{lib: lib}
		if err := bind(lib, "the CUDA driver", d.symbols()); err != nil {
			return nil, err
		}
		driverLib = d
	}
	return driverLib, nil
}

func loadCUBLAS() (*cublasAPI, error) {
	loadMu.Lock()
	defer loadMu.Unlock()
	if cublasLib == nil {
		lib, err := load(libCUBLAS, searchDirs(osSearchEnv), true, systemDlopen)
		if err != nil {
			return nil, err
		}
		c := &cublasAPI{lib: lib}
		if err := bind(lib, "cuBLAS", c.symbols()); err != nil {
			return nil, err
		}
		cublasLib = c
	}
	return cublasLib, nil
}

func loadNVRTC() (*nvrtcAPI, error) {
	loadMu.Lock()
	defer loadMu.Unlock()
	if nvrtcLib == nil {
		lib, err := load(libNVRTC, searchDirs(osSearchEnv), true, systemDlopen)
		if err != nil {
			return nil, err
		}
		n := &nvrtcAPI{lib: lib}
		if err := bind(lib, "NVRTC", n.symbols()); err != nil {
			return nil, err
		}
		nvrtcLib = n
	}
	return nvrtcLib, nil
}
