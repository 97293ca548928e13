package compute

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Run-time compiled device kernels. Packages that own device maths (each
// output head, the GPU generator) embed their CUDA C beside their Go code
// and launch it through these optional interfaces, which only a GPU backend
// implements; on the CPU backend those packages run their Go maths instead.

// Arg is one kernel argument: a device pointer (a View whose n elements are
// bounds-checked before the launch), or an 8-byte integer or a float32,
// matching a kernel parameter of type float* / long long / float.
type Arg struct {
	View View
	N    int
	Bits uint64
	Kind byte // 'p' pointer, 'l' long long, 'f' float
}

// Ptr is a pointer argument covering n elements of v.
func Ptr(v View, n int) Arg { return Arg{View: v, N: n, Kind: 'p'} }

// Int is a long long argument.
func Int(n int) Arg { return Arg{Bits: uint64(int64(n)), Kind: 'l'} }

// Float is a float argument.
func Float(x float32) Arg { return Arg{Bits: uint64(float32bits(x)), Kind: 'f'} }

// KernelCompiler is implemented by backends that compile CUDA C at run time
// (compute/cuda, through NVRTC, with the PTX cached on disk).
type KernelCompiler interface {
	// Compile compiles source (once per process for a given source; later
	// calls return the same Module) and resolves the named extern "C"
	// kernels. name labels compiler errors.
	Compile(name, source string, kernels ...string) (Module, error)
}

// Module is a compiled set of kernels.
type Module interface {
	// Launch queues kernel on the backend's stream with a 1-D grid of
	// blocks of block threads and sharedBytes of dynamic shared memory.
	// The argument kinds must match the kernel's parameters.
	Launch(kernel string, grid, block, sharedBytes int, args ...Arg)
}

// CoResident is implemented by Modules that can say how many blocks of a
// kernel the device runs at once. A kernel whose blocks wait for each other
// (the GPU generator's one-launch step, wavenet/generate.cu) must not be
// launched with more: the blocks beyond it would only start when others
// finish, and the others never finish.
type CoResident interface {
	// CoResidentBlocks is the number of blocks of kernel, with block
	// threads and sharedBytes of dynamic shared memory each, that can be
	// resident on the device at the same time (0: unknown).
	CoResidentBlocks(kernel string, block, sharedBytes int) int
}

// ClusterLauncher is implemented by Modules that launch thread-block
// clusters (compute capability 9.0 and newer; the simulator models them).
// The blocks of a cluster are scheduled together on neighbouring SMs, can
// read and write each other's shared memory (__cluster_map_shared_rank) and
// wait at a cluster-wide barrier (__cluster_barrier_arrive/_wait), which
// costs far less than passing values through L2 between the blocks of an
// ordinary grid. The GPU generator's cluster step (wavenet/generate.cu)
// exchanges every layer's results this way.
type ClusterLauncher interface {
	// CoResidentClusters is the number of clusters of cluster blocks
	// (each of block threads and sharedBytes of dynamic shared memory)
	// that can be resident at once; 0 when the device or kernel cannot
	// run clusters of that size.
	CoResidentClusters(kernel string, cluster, block, sharedBytes int) int
	// LaunchCluster queues kernel on the backend's stream as grid blocks
	// in clusters of cluster consecutive blocks (grid a multiple of
	// cluster), as Module.Launch otherwise.
	LaunchCluster(kernel string, grid, cluster, block, sharedBytes int, args ...Arg)
}

// GraphCapturer is implemented by backends that can record a sequence of
// launches once and replay it with one call (CUDA graphs): the per-sample
// step of synthesis is hundreds of tiny kernels, and replaying them as a
// graph removes the host's launch cost from every sample.
type GraphCapturer interface {
	// Capture records the kernels and copies that fn queues (fn must not
	// read results back to the host) into a replayable graph.
	Capture(fn func()) (Graph, error)
}

// Graph is a captured sequence of device work.
type Graph interface {
	Launch() // queue one replay on the backend's stream
	Free()
}

func float32bits(x float32) uint32 { return math.Float32bits(x) }

// KernelDecl is what a launcher needs to know of one kernel, read from its
// CUDA C source: the parameter kinds (Sig: p for any pointer, l for long
// long, f for float, the only parameter types a Module accepts) and the
// thread limit of its __launch_bounds__ (0: none).
type KernelDecl struct {
	Sig        string
	MaxThreads int
}

var (
	kernelDecl = regexp.MustCompile(`__global__\s+void\s+(?:__launch_bounds__\s*\(([^)]*)\)\s*)?(\w+)\s*\(([^)]*)\)`)
	spaces     = regexp.MustCompile(`\s+`)
)

// ParseKernels reads the declarations of the named kernels from source, so
// a backend can refuse a launch whose arguments do not match before a GPU
// reads garbage. It fails on a missing kernel or a parameter of another
// type.
func ParseKernels(source string, kernels []string) (map[string]KernelDecl, error) {
	found := map[string]KernelDecl{}
	for _, m := range kernelDecl.FindAllStringSubmatch(source, -1) {
		name := m[2]
		var d KernelDecl
		if m[1] != "" {
			n, err := strconv.Atoi(strings.TrimSpace(strings.Split(m[1], ",")[0]))
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("kernel %s: __launch_bounds__(%s): want a positive integer thread count", name, m[1])
			}
			d.MaxThreads = n
		}
		var sig strings.Builder
		params := strings.TrimSpace(m[3])
		if params != "" && params != "void" {
			for _, p := range strings.Split(params, ",") {
				p = spaces.ReplaceAllString(strings.TrimSpace(p), " ")
				switch {
				case strings.Contains(p, "*"):
					sig.WriteByte('p')
				case strings.HasPrefix(p, "long long ") || strings.HasPrefix(p, "const long long ") || strings.HasPrefix(p, "ll ") || strings.HasPrefix(p, "const ll "):
					sig.WriteByte('l')
				case strings.HasPrefix(p, "float ") || strings.HasPrefix(p, "const float "):
					sig.WriteByte('f')
				default:
					return nil, fmt.Errorf("kernel %s: parameter %q: only pointers, long long and float are supported", name, p)
				}
			}
		}
		d.Sig = sig.String()
		found[name] = d
	}
	out := map[string]KernelDecl{}
	for _, k := range kernels {
		d, ok := found[k]
		if !ok {
			return nil, fmt.Errorf("no __global__ void %s(...) in the source", k)
		}
		out[k] = d
	}
	return out, nil
}
