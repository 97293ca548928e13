// Package cudasim is a test-support backend that runs CUDA C kernels on the
// CPU, so the code written for a GPU backend (the output heads' kernels, the
// GPU generator) is tested on machines without a GPU: CI, laptops.
//
// Backend embeds compute/cpu's backend (buffers are host memory, so a
// kernel's device pointers are host addresses) and adds the optional GPU
// interfaces. compute.KernelCompiler builds a source with g++ (-Wall
// -Werror) behind a C++ prelude, cxx/prelude.cpp, that maps the CUDA
// built-ins onto the host. Module.Launch checks the arguments as the CUDA
// backend does, then runs every thread of a block as a fiber: __syncthreads
// parks a fiber until its whole block is there, a warp operation (shuffles,
// ballot, __syncwarp) until its whole warp is, so index arithmetic,
// shared-memory reductions, warp exchanges and argument lists really run,
// and a thread that misses a barrier its peers wait at (or exits before it)
// fails the launch instead of hanging. compute.GraphCapturer keeps the
// captured function and calls it again on each Graph.Launch (see Capture).
//
// It is slow, and not a product backend: every thread of every block is a
// fiber switch at each barrier, so a launch costs about a thousand times
// what it does on a GPU. Nothing outside tests should use it.
//
// What differs from a GPU: host libm stands in for the device's maths
// (tanhf, expf, exp, log agree to a few ulp; g++ does not contract a*b+c
// into an FMA as NVRTC does), so results agree to rounding, not bitwise.
// The blocks of a launch run on up to Options.Workers OS threads, each with
// its own copy of the compiled library, so kernels must not depend on the
// order of blocks (as on a GPU); atomics are not provided. Blocks may wait
// for each other (polling volatile memory, pausing with __nanosleep) when a
// launch has no more blocks than CoResidentBlocks, the number of workers:
// each block then has an OS thread of its own. Warp operations
// need every lane of the warp (the mask is not read). Static __shared__
// variables keep their values from block to block; dynamic shared memory
// (extern __shared__ T name[], at most CUDA's default 48 KiB) starts each
// block filled with 0xff bytes (NaN as float), and a write past the
// launch's sharedBytes fails the launch. Each fiber has a 64 KiB stack above
// a guard page. Thread-block clusters (compute.ClusterLauncher) run each
// block of the launch on a worker of its own, with the cluster barrier
// (__cluster_barrier_arrive/_wait) and mapped peer shared memory
// (__cluster_map_shared_rank, dynamic shared memory only) of sm_90; misuse
// (a peer mapped before the first cluster barrier, unpaired arrive and
// wait) fails the launch.
package cudasim

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
)

//go:embed cxx/prelude.cpp
var preludeSource string

//go:embed cxx/launch.cpp
var launchSource string

// ErrNoCompiler is wrapped by New's error when there is no g++ to build
// kernels with; tests skip on it.
var ErrNoCompiler = errors.New("cudasim: no g++ to build CUDA kernels for the CPU")

const (
	maxBlock  = 1024     // threads per block, as on a GPU
	maxShared = 48 << 10 // dynamic shared memory per block: CUDA's default limit (no opt-in attribute is set)
)

// Options configure New.
type Options struct {
	// CPU configures the embedded CPU backend.
	CPU cpu.Options
	// Workers is the number of OS threads that run the blocks of one
	// launch; 0 means GOMAXPROCS, at most 8.
	Workers int

	// ucontext builds the portable ucontext fiber switch instead of the
	// x86-64 assembly one (tests of the fallback).
	ucontext bool
}

// Backend is the CPU backend with CUDA C kernels compiled for the host.
// Its methods may be called from several goroutines; kernel launches run
// one at a time. Its compiled libraries and fiber stacks stay mapped until
// the process exits, so a test binary should share one Backend.
type Backend struct {
	*cpu.Backend
	cxx      string
	workers  int
	ucontext bool

	mu   sync.Mutex // guards mods
	mods map[string]*module

	launchMu sync.Mutex // guards stacks and the launches using them
	stacks   []stackSet // per worker, shared by the modules
}

// stackSet is n fiber stacks mapped by hb_sim_map_stacks (each with a guard
// page, so one set per worker, not per module and worker, keeps the number
// of mappings down).
type stackSet struct {
	base uintptr
	n    int
}

var (
	_ compute.Backend         = (*Backend)(nil)
	_ compute.HostAccessor    = (*Backend)(nil)
	_ compute.KernelCompiler  = (*Backend)(nil)
	_ compute.GraphCapturer   = (*Backend)(nil)
	_ compute.CoResident      = (*module)(nil)
	_ compute.ClusterLauncher = (*module)(nil)
)

// New builds a simulator backend. Its error wraps ErrNoCompiler when g++ is
// not on PATH.
func New(opts Options) (*Backend, error) {
	cxx, err := exec.LookPath("g++")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoCompiler, err)
	}
	if opts.Workers < 0 {
		return nil, fmt.Errorf("cudasim: Workers = %d, want >= 0", opts.Workers)
	}
	workers := opts.Workers
	if workers == 0 {
		workers = min(runtime.GOMAXPROCS(0), 8)
	}
	cb, err := cpu.New(opts.CPU)
	if err != nil {
		return nil, err
	}
	return &Backend{Backend: cb, cxx: cxx, workers: workers, ucontext: opts.ucontext, mods: map[string]*module{},
		stacks: make([]stackSet, workers)}, nil
}

// Name implements compute.Backend.
func (be *Backend) Name() string { return "cudasim" }

// Describe implements compute.Backend.
func (be *Backend) Describe() string {
	return fmt.Sprintf("cudasim: CUDA C built with g++ for the host, %d workers; %s", be.workers, be.Backend.Describe())
}

// module is one compiled source: a copy of the library per worker.
type module struct {
	be    *Backend
	name  string
	index map[string]int                // kernel -> entry of the library's table
	decls map[string]compute.KernelDecl // kernel -> parameter kinds, __launch_bounds__
	libs  []library                     // one per worker
}

// library is the entry points of one loaded copy.
type library struct {
	launch, mapStacks, unmapStacks uintptr
}

// Compile implements compute.KernelCompiler: source is built once per
// backend (later calls with the same source return the same Module) into a
// shared library that is loaded once per worker; the build directory is
// removed before Compile returns.
func (be *Backend) Compile(name, source string, kernels ...string) (compute.Module, error) {
	be.mu.Lock()
	defer be.mu.Unlock()
	if m, ok := be.mods[source]; ok {
		for _, k := range kernels {
			if _, ok := m.index[k]; !ok {
				return nil, fmt.Errorf("cudasim: %s: kernel %s was not resolved when the module was first compiled", name, k)
			}
		}
		return m, nil
	}
	decls, err := compute.ParseKernels(source, kernels)
	if err != nil {
		return nil, fmt.Errorf("cudasim: %s: %w", name, err)
	}
	code := hostSource(name, source, kernels)
	dir, err := os.MkdirTemp("", "wavecat-cudasim-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	src, lib := filepath.Join(dir, "module.cpp"), filepath.Join(dir, "module.so")
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-std=c++17", "-O2", "-fno-strict-aliasing", "-Wall", "-Werror", "-Wno-unused-function", "-Wno-unknown-pragmas", "-fPIC", "-shared", "-o", lib, src}
	if be.ucontext {
		args = append([]string{"-DHB_SIM_UCONTEXT"}, args...)
	}
	if out, err := exec.Command(be.cxx, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("cudasim: g++ %s: %v\n%s", name, err, out)
	}
	bin, err := os.ReadFile(lib)
	if err != nil {
		return nil, err
	}
	m := &module{be: be, name: name, index: map[string]int{}, decls: decls}
	for i, k := range kernels {
		m.index[k] = i
	}
	// A library loaded twice is shared, so each worker loads its own copy
	// (a file with another name and inode).
	for w := 0; w < be.workers; w++ {
		path := filepath.Join(dir, fmt.Sprintf("module-%d.so", w))
		if err := os.WriteFile(path, bin, 0o755); err != nil {
			return nil, err
		}
		h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err != nil {
			return nil, fmt.Errorf("cudasim: loading %s: %w", name, err)
		}
		var lib library
		for _, sym := range []struct {
			name string
			fn   *uintptr
		}{{"hb_sim_launch", &lib.launch}, {"hb_sim_map_stacks", &lib.mapStacks}, {"hb_sim_unmap_stacks", &lib.unmapStacks}} {
			if *sym.fn, err = purego.Dlsym(h, sym.name); err != nil {
				return nil, fmt.Errorf("cudasim: %s: %w", name, err)
			}
		}
		m.libs = append(m.libs, lib)
	}
	be.mods[source] = m
	return m, nil
}

// launchErrors are hb_sim_launch's return codes.
var launchErrors = map[uintptr]string{
	1: "bad launch arguments",
	2: "the threads of a block could not all finish: they diverged at a barrier or warp operation " +
		"(every thread of a block must reach each __syncthreads, and every lane of a warp each warp operation, equally often)",
	3: "a block wrote past its dynamic shared memory (sharedBytes of the launch)",
	4: "a block arrived at the cluster barrier twice without waiting, or waited without arriving",
	5: "__cluster_map_shared_rank of a pointer outside the block's dynamic shared memory (the simulator maps only that), or of a rank outside the cluster",
	6: "a block waited 60 s at the cluster barrier: a block of its cluster never arrived (every block of a cluster must reach each cluster barrier equally often)",
	7: "a block mapped a peer's shared memory before it had passed a cluster barrier (CUDA does not promise the peer has started)",
}

// Launch implements compute.Module: it checks the arguments as the CUDA
// backend does (kinds against the kernel's parameters, every pointer's
// range), then runs the grid's blocks and returns when they are done. A
// kernel failure panics, as a failed launch does on the CUDA backend.
func (m *module) Launch(kernel string, grid, block, sharedBytes int, args ...compute.Arg) {
	m.launch(kernel, grid, 0, block, sharedBytes, args)
}

// LaunchCluster implements compute.ClusterLauncher: as Launch, with the
// blocks in clusters of cluster (see prelude.cpp). Every block has a
// worker of its own, so a grid may have no more blocks than workers.
func (m *module) LaunchCluster(kernel string, grid, cluster, block, sharedBytes int, args ...compute.Arg) {
	if cluster < 1 || grid%cluster != 0 {
		panic(fmt.Sprintf("cudasim: %s: kernel %s launched as %d blocks in clusters of %d: want a positive cluster size dividing the grid", m.name, kernel, grid, cluster))
	}
	if grid > len(m.libs) {
		panic(fmt.Sprintf("cudasim: %s: kernel %s: a cluster launch of %d blocks needs a worker per block, there are %d (Options.Workers)", m.name, kernel, grid, len(m.libs)))
	}
	m.launch(kernel, grid, cluster, block, sharedBytes, args)
}

// CoResidentClusters implements compute.ClusterLauncher: as many clusters
// as there are workers for their blocks.
func (m *module) CoResidentClusters(kernel string, cluster, block, sharedBytes int) int {
	if cluster < 1 || m.CoResidentBlocks(kernel, block, sharedBytes) == 0 {
		return 0
	}
	return len(m.libs) / cluster
}

// launch runs a grid, in clusters of cluster blocks when cluster > 0.
func (m *module) launch(kernel string, grid, cluster, block, sharedBytes int, args []compute.Arg) {
	k, ok := m.index[kernel]
	if !ok {
		panic(fmt.Sprintf("cudasim: %s: kernel %s not compiled", m.name, kernel))
	}
	sig := m.decls[kernel].Sig
	if len(args) != len(sig) {
		panic(fmt.Sprintf("cudasim: %s: kernel %s takes %d arguments (%s), launched with %d", m.name, kernel, len(sig), sig, len(args)))
	}
	vals := make([]uint64, len(args))
	ptrs := make([]unsafe.Pointer, len(args)+1)
	keep := make([][]float32, 0, len(args))
	for i, a := range args {
		if a.Kind != sig[i] {
			panic(fmt.Sprintf("cudasim: %s: kernel %s argument %d is %c, want %c (signature %s)", m.name, kernel, i, a.Kind, sig[i], sig))
		}
		if a.Kind == 'p' {
			h := m.be.Host(a.View, a.N)
			keep = append(keep, h)
			if len(h) > 0 {
				vals[i] = uint64(uintptr(unsafe.Pointer(&h[0])))
			}
		} else {
			vals[i] = a.Bits
		}
		ptrs[i] = unsafe.Pointer(&vals[i])
	}
	if grid <= 0 || block <= 0 {
		return
	}
	if block > maxBlock {
		panic(fmt.Sprintf("cudasim: %s: kernel %s launched with blocks of %d threads (at most %d)", m.name, kernel, block, maxBlock))
	}
	if b := m.decls[kernel].MaxThreads; b > 0 && block > b {
		panic(fmt.Sprintf("cudasim: %s: kernel %s launched with blocks of %d threads, more than its __launch_bounds__(%d)", m.name, kernel, block, b))
	}
	if sharedBytes < 0 || sharedBytes > maxShared {
		panic(fmt.Sprintf("cudasim: %s: kernel %s launched with %d bytes of dynamic shared memory (at most %d)", m.name, kernel, sharedBytes, maxShared))
	}
	be := m.be
	be.launchMu.Lock()
	defer be.launchMu.Unlock()
	nw := min(len(m.libs), grid)
	for w := range nw {
		if st := be.stacks[w]; st.n < block {
			base, _, _ := purego.SyscallN(m.libs[w].mapStacks, uintptr(block))
			if base == 0 {
				panic(fmt.Sprintf("cudasim: %s: kernel %s: could not map %d fiber stacks", m.name, kernel, block))
			}
			if st.n > 0 {
				purego.SyscallN(m.libs[w].unmapStacks, st.base, uintptr(st.n))
			}
			be.stacks[w] = stackSet{base, block}
		}
	}
	// The cluster table: each block's shared memory address, then an
	// arrival count and a generation per cluster (prelude.cpp).
	csize, ctab := 1, []uint64(nil)
	var ctabPtr uintptr
	if cluster > 0 {
		csize, ctab = cluster, make([]uint64, grid+2*(grid/cluster))
		ctabPtr = uintptr(unsafe.Pointer(&ctab[0]))
	}
	rcs := make([]uintptr, nw)
	run := func(w int) {
		st := be.stacks[w]
		rcs[w], _, _ = purego.SyscallN(m.libs[w].launch, uintptr(k), uintptr(grid), uintptr(block), uintptr(sharedBytes),
			uintptr(unsafe.Pointer(&ptrs[0])), uintptr(w), uintptr(nw), st.base, uintptr(st.n), uintptr(csize), ctabPtr)
	}
	if nw == 1 {
		run(0)
	} else {
		var wg sync.WaitGroup
		for w := 1; w < nw; w++ {
			wg.Go(func() { run(w) })
		}
		run(0)
		wg.Wait()
	}
	runtime.KeepAlive(keep)
	runtime.KeepAlive(vals)
	runtime.KeepAlive(ptrs)
	runtime.KeepAlive(ctab)
	for _, rc := range rcs {
		if rc != 0 {
			why := launchErrors[rc]
			if why == "" {
				why = "unknown error"
			}
			panic(fmt.Sprintf("cudasim: %s: kernel %s (grid %d, block %d, %d shared bytes) failed with code %d: %s", m.name, kernel, grid, block, sharedBytes, rc, why))
		}
	}
}

// CoResidentBlocks implements compute.CoResident: a launch runs its blocks
// on the workers, each worker its share one after another, so as many
// blocks as there are workers run at once. 0 for a launch Launch refuses.
func (m *module) CoResidentBlocks(kernel string, block, sharedBytes int) int {
	if _, ok := m.index[kernel]; !ok || block <= 0 || block > maxBlock || sharedBytes < 0 || sharedBytes > maxShared {
		return 0
	}
	if b := m.decls[kernel].MaxThreads; b > 0 && block > b {
		return 0
	}
	return len(m.libs)
}

// Capture implements compute.GraphCapturer. It runs nothing: the graph
// keeps fn and calls it again on each Launch. Replaying the Go calls is
// equivalent to a CUDA graph for an fn that only queues work (kernels and
// copies) with the same arguments each time, which is what the interface
// asks of fn; it does not catch an fn that reads results back or whose
// arguments change between replays (a CUDA graph would keep the first
// values).
func (be *Backend) Capture(fn func()) (compute.Graph, error) {
	if fn == nil {
		return nil, errors.New("cudasim: Capture of a nil function")
	}
	return &graph{fn: fn}, nil
}

type graph struct{ fn func() }

func (g *graph) Launch() {
	if g.fn == nil {
		panic("cudasim: Launch of a freed graph")
	}
	g.fn()
}

func (g *graph) Free() { g.fn = nil }

var (
	spaces       = regexp.MustCompile(`\s+`)
	externShared = regexp.MustCompile(`extern\s+__shared__\s+(?:__align__\s*\([^)]*\)\s+)?([\w\s]+?)\s+(\w+)\s*\[\s*\]\s*;`)
)

// hostSource is the C++ translation unit for source: the prelude, the
// source with its dynamic shared arrays pointed at the simulator's buffer
// (line numbers kept, so g++'s messages point into the .cu; other forms of
// extern __shared__ fail to compile), one trampoline
// per kernel and the launcher.
func hostSource(name, source string, kernels []string) string {
	src := externShared.ReplaceAllStringFunc(source, func(decl string) string {
		m := externShared.FindStringSubmatch(decl)
		typ := spaces.ReplaceAllString(strings.TrimSpace(m[1]), " ")
		return fmt.Sprintf("%s *const %s = reinterpret_cast<%s *>(hb_sim_dyn_shared);", typ, m[2], typ) +
			strings.Repeat("\n", strings.Count(decl, "\n"))
	})
	var sb strings.Builder
	sb.WriteString(preludeSource)
	fmt.Fprintf(&sb, "\n#line 1 %q\n", name)
	sb.WriteString(src)
	sb.WriteString("\n#line 1 \"cudasim-launch\"\n")
	for i, k := range kernels {
		fmt.Fprintf(&sb, "static void hb_sim_tramp_%d(void **p) { hb_sim_invoke(%s, p); }\n", i, k)
	}
	sb.WriteString("static void (*const hb_sim_table[])(void **) = {\n")
	for i := range kernels {
		fmt.Fprintf(&sb, "    hb_sim_tramp_%d,\n", i)
	}
	if len(kernels) == 0 {
		sb.WriteString("    nullptr,\n")
	}
	sb.WriteString("};\n")
	sb.WriteString(launchSource)
	return sb.String()
}
