package cuda

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/wavecat/wavecat/compute"
)

// Modules of other packages (compute.KernelCompiler): the output heads and
// the GPU generator embed their own .cu files and compile them here, with the
// same NVRTC options, architecture and disk cache as kernels.cu.

var (
	_ compute.KernelCompiler = (*Backend)(nil)
	_ compute.GraphCapturer  = (*Backend)(nil)
	_ compute.CoResident     = (*module)(nil)
)

// ErrNoNVRTC is wrapped by CheckCompile's error when NVRTC cannot be loaded.
var ErrNoNVRTC = errors.New("NVRTC not found")

// module is one compiled source.
type module struct {
	be    *Backend
	name  string
	mod   uintptr
	funcs map[string]uintptr
	decls map[string]compute.KernelDecl
	// nonPortable: kernels whose non-portable cluster attribute was
	// tried (true: set), see clusterReady.
	nonPortable map[string]bool
}

// Compile implements compute.KernelCompiler. A source is compiled once per
// backend; each kernel's parameter kinds are read from the source so Launch
// can refuse mismatched arguments before the GPU reads garbage.
func (be *Backend) Compile(name, source string, kernels ...string) (compute.Module, error) {
	decls, err := compute.ParseKernels(source, kernels)
	if err != nil {
		return nil, fmt.Errorf("cuda: %s: %w", name, err)
	}
	defer be.enter()()
	if m, ok := be.modules[source]; ok {
		for _, k := range kernels {
			if _, ok := m.funcs[k]; !ok {
				return nil, fmt.Errorf("cuda: %s: kernel %s was not resolved when the module was first compiled", name, k)
			}
		}
		return m, nil
	}
	ptx, fromCache, err := cachedPTXOf(be.nv, source, name, be.arch, be.driverVersion)
	if err != nil {
		return nil, fmt.Errorf("cuda: compiling %s: %w", name, err)
	}
	m := &module{be: be, name: name, funcs: map[string]uintptr{}, decls: decls}
	r := be.drv.cuModuleLoadData(&m.mod, unsafe.Pointer(&nulTerminated(ptx)[0]))
	if r != cuSuccess && fromCache {
		if ptx, _, err = be.nv.compile(source, name, compileOptions(be.arch)); err != nil {
			return nil, fmt.Errorf("cuda: compiling %s: %w", name, err)
		}
		r = be.drv.cuModuleLoadData(&m.mod, unsafe.Pointer(&nulTerminated(ptx)[0]))
	}
	if err := be.drv.check("cuModuleLoadData("+name+")", r); err != nil {
		return nil, err
	}
	for _, k := range kernels {
		var f uintptr
		if err := be.drv.check("cuModuleGetFunction("+k+")", be.drv.cuModuleGetFunction(&f, m.mod, k)); err != nil {
			be.drv.cuModuleUnload(m.mod)
			return nil, fmt.Errorf("cuda: %s: %w", name, err)
		}
		m.funcs[k] = f
	}
	if be.modules == nil {
		be.modules = map[string]*module{}
	}
	be.modules[source] = m
	return m, nil
}

// Launch implements compute.Module.
func (m *module) Launch(kernel string, grid, block, sharedBytes int, args ...compute.Arg) {
	f, vals := m.launchArgs(kernel, block, args)
	if grid <= 0 || block <= 0 {
		return
	}
	be := m.be
	defer be.enter()()
	copy(be.argVals, vals[:len(args)])
	r := be.drv.cuLaunchKernel(f, uint32(grid), 1, 1, uint32(block), 1, 1, uint32(sharedBytes), be.stream, unsafe.Add(be.args, 8*maxKernelArgs), nil)
	be.must("cuLaunchKernel("+kernel+")", r)
}

// launchArgs checks a launch of kernel (compiled, within its
// __launch_bounds__, arguments of its parameters' kinds, pointers in
// range) and returns its function and argument values (an array, so a
// launch allocates nothing).
func (m *module) launchArgs(kernel string, block int, args []compute.Arg) (uintptr, [maxKernelArgs]uint64) {
	f, ok := m.funcs[kernel]
	if !ok {
		panic(fmt.Sprintf("cuda: %s: kernel %s not compiled", m.name, kernel))
	}
	d := m.decls[kernel]
	sig := d.Sig
	if d.MaxThreads > 0 && block > d.MaxThreads {
		panic(fmt.Sprintf("cuda: %s: kernel %s launched with %d threads per block, above its __launch_bounds__(%d)", m.name, kernel, block, d.MaxThreads))
	}
	if len(args) != len(sig) || len(args) > maxKernelArgs {
		panic(fmt.Sprintf("cuda: %s: kernel %s takes %d arguments (%s), launched with %d", m.name, kernel, len(sig), sig, len(args)))
	}
	var vals [maxKernelArgs]uint64
	for i, a := range args {
		if a.Kind != sig[i] {
			panic(fmt.Sprintf("cuda: %s: kernel %s argument %d is %c, want %c (signature %s)", m.name, kernel, i, a.Kind, sig[i], sig))
		}
		if a.Kind == 'p' {
			vals[i] = m.be.dptr(a.View, a.N, kernel)
		} else {
			vals[i] = a.Bits
		}
	}
	return f, vals
}

// CoResidentBlocks implements compute.CoResident: the driver's occupancy
// for the kernel at that block size and shared memory, times the number of
// multiprocessors; 0 when the driver cannot say or the kernel is unknown.
func (m *module) CoResidentBlocks(kernel string, block, sharedBytes int) int {
	be := m.be
	f, ok := m.occupancyFunc(kernel, block, sharedBytes)
	if !ok || be.drv.cuOccupancyMaxActiveBlocksPerMultiprocessor == nil {
		return 0
	}
	defer be.enter()()
	var n int32
	if be.drv.cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, f, int32(block), uint64(sharedBytes)) != cuSuccess || n < 0 {
		return 0
	}
	return int(n) * be.sms
}

// occupancyFunc is the kernel's function when an occupancy query for that
// launch shape makes sense: the kernel is known, the sizes are valid and
// the block is within its __launch_bounds__.
func (m *module) occupancyFunc(kernel string, block, sharedBytes int) (uintptr, bool) {
	f, ok := m.funcs[kernel]
	if !ok || block <= 0 || sharedBytes < 0 {
		return 0, false
	}
	if d := m.decls[kernel]; d.MaxThreads > 0 && block > d.MaxThreads {
		return 0, false
	}
	return f, true
}

// CheckCompile compiles source with NVRTC for compute_80 (no driver or GPU
// needed), so CI catches syntax errors in the embedded .cu files of every
// package. It wraps ErrNoNVRTC when NVRTC cannot be loaded.
func CheckCompile(name, source string) error {
	_, err := CheckCompileFor(name, source, 80)
	return err
}

// CheckCompileFor is CheckCompile for compute capability sm (the oldest
// architecture NVRTC supports at or above it), and returns the PTX: code
// behind __CUDA_ARCH__ >= 900 (thread-block clusters) compiles only for
// sm >= 90.
func CheckCompileFor(name, source string, sm int) (string, error) {
	nv, err := loadNVRTC()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoNVRTC, err)
	}
	a, err := pickArchAtLeast(sm, nv.supportedArchs())
	if err != nil {
		return "", err
	}
	ptx, log, err := nv.compile(source, name, compileOptions(fmt.Sprintf("compute_%d", a)))
	if err != nil {
		return "", fmt.Errorf("cuda: %s: %w", name, err)
	}
	if strings.Contains(log, "warning") {
		return "", fmt.Errorf("cuda: %s compiles with warnings:\n%s", name, log)
	}
	return strings.TrimRight(string(ptx), "\x00"), nil
}

// graph is a captured, instantiated CUDA graph.
type graph struct {
	be      *Backend
	g, exec uintptr
	freed   bool
}

// Capture implements compute.GraphCapturer: fn's launches are recorded on
// the stream (relaxed mode, so other threads' CUDA calls are not
// disturbed) and instantiated.
func (be *Backend) Capture(fn func()) (compute.Graph, error) {
	d := be.drv
	if d.cuStreamBeginCapture == nil || d.cuStreamEndCapture == nil || d.cuGraphInstantiateWithFlags == nil || d.cuGraphLaunch == nil {
		return nil, errors.New("cuda: this driver has no CUDA graph API (needs CUDA 11.4 or newer)")
	}
	const captureModeRelaxed = 2
	func() {
		defer be.enter()()
		be.must("cuStreamBeginCapture", d.cuStreamBeginCapture(be.stream, captureModeRelaxed))
	}()
	captured := false
	var g uintptr
	defer func() {
		if !captured {
			// fn panicked: end the capture so the stream is usable again.
			func() {
				defer be.enter()()
				d.cuStreamEndCapture(be.stream, &g)
				if g != 0 {
					d.cuGraphDestroy(g)
				}
			}()
		}
	}()
	fn()
	captured = true
	defer be.enter()()
	if err := d.check("cuStreamEndCapture", d.cuStreamEndCapture(be.stream, &g)); err != nil {
		return nil, err
	}
	gr := &graph{be: be, g: g}
	if err := d.check("cuGraphInstantiateWithFlags", d.cuGraphInstantiateWithFlags(&gr.exec, g, 0)); err != nil {
		d.cuGraphDestroy(g)
		return nil, err
	}
	return gr, nil
}

// Launch implements compute.Graph.
func (g *graph) Launch() {
	if g.freed {
		panic("cuda: graph launched after Free")
	}
	defer g.be.enter()()
	g.be.must("cuGraphLaunch", g.be.drv.cuGraphLaunch(g.exec, g.be.stream))
}

// Free implements compute.Graph.
func (g *graph) Free() {
	if g.freed {
		return
	}
	g.freed = true
	defer g.be.enter()()
	g.be.drv.cuGraphExecDestroy(g.exec)
	g.be.drv.cuGraphDestroy(g.g)
}
