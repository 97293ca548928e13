package cuda

import (
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/computetest"
)

// TestLaunchConfigLayout: the Go mirrors of CUlaunchConfig and
// CUlaunchAttribute have cuda.h's sizes and field offsets on 64-bit
// platforms (the driver reads them as C structs).
func TestLaunchConfigLayout(t *testing.T) {
	var c cuLaunchConfig
	var a cuLaunchAttribute
	for _, f := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(CUlaunchConfig)", unsafe.Sizeof(c), 56},
		{"CUlaunchConfig.sharedMemBytes", unsafe.Offsetof(c.sharedBytes), 24},
		{"CUlaunchConfig.hStream", unsafe.Offsetof(c.stream), 32},
		{"CUlaunchConfig.attrs", unsafe.Offsetof(c.attrs), 40},
		{"CUlaunchConfig.numAttrs", unsafe.Offsetof(c.numAttrs), 48},
		{"sizeof(CUlaunchAttribute)", unsafe.Sizeof(a), 72},
		{"CUlaunchAttribute.value.clusterDim.x", unsafe.Offsetof(a.x), 8},
		{"CUlaunchAttribute.value.clusterDim.z", unsafe.Offsetof(a.z), 16},
	} {
		if f.got != f.want {
			t.Errorf("%s = %d, want %d", f.name, f.got, f.want)
		}
	}
	if launchAttrOff+unsafe.Sizeof(a) > argsBytes || launchConfigOff+unsafe.Sizeof(c) > launchAttrOff {
		t.Errorf("the launch config (%d..) and attribute (%d..) do not fit the %d-byte argument area", launchConfigOff, launchAttrOff, argsBytes)
	}
}

// fakeCluster is what the fake driver saw of a cluster launch or occupancy
// query: the config's fields and the cluster-dimension attribute.
type fakeCluster struct {
	f                               uintptr
	grid, block, shared, cx, cy, cz uint32
	stream                          uintptr
	attrID, numAttrs                uint32
}

func readConfig(f uintptr, cfg unsafe.Pointer) fakeCluster {
	c := (*cuLaunchConfig)(cfg)
	r := fakeCluster{f: f, grid: c.gridX, block: c.blockX, shared: c.sharedBytes, stream: c.stream, numAttrs: c.numAttrs}
	if c.gridY != 1 || c.gridZ != 1 || c.blockY != 1 || c.blockZ != 1 {
		r.grid = 0 // flagged: not a 1-D launch
	}
	if c.numAttrs > 0 {
		a := (*cuLaunchAttribute)(c.attrs)
		r.attrID, r.cx, r.cy, r.cz = a.id, a.x, a.y, a.z
	}
	return r
}

// TestFakeClusterLaunch: on a fake sm_90 device, CoResidentClusters asks
// the driver's cluster occupancy with a one-cluster config, sets the
// non-portable attribute once for clusters above 8 blocks, and answers 0
// where clusters cannot run (no entry points, an sm_80 device, a refused
// attribute, a size above 16); LaunchCluster passes the grid, block, shared
// memory, stream, cluster dimension and argument slots to
// cuLaunchKernelEx, and refuses a grid that is not whole clusters.
func TestFakeClusterLaunch(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	be, _, err := newFakeInit(t, 90, false)
	if err != nil {
		t.Fatal(err)
	}
	m, err := be.Compile("cluster.cu", testModuleSrc, "t_axpb", "t_inc")
	if err != nil {
		t.Fatal(err)
	}
	cl, ok := m.(compute.ClusterLauncher)
	if !ok {
		t.Fatal("cuda module does not implement compute.ClusterLauncher")
	}
	if n := cl.CoResidentClusters("t_axpb", 8, 256, 0); n != 0 {
		t.Errorf("without the cluster entry points: %d clusters, want 0", n)
	}
	var queries, launches []fakeCluster
	var attrs [][3]int64
	refuseAttr := false
	be.drv.cuOccupancyMaxActiveClusters = func(n *int32, f uintptr, cfg unsafe.Pointer) cuResult {
		q := readConfig(f, cfg)
		queries = append(queries, q)
		*n = int32(132 / q.cx)
		return cuSuccess
	}
	be.drv.cuFuncSetAttribute = func(f uintptr, attr, v int32) cuResult {
		attrs = append(attrs, [3]int64{int64(f), int64(attr), int64(v)})
		if refuseAttr {
			return 1
		}
		return cuSuccess
	}
	be.drv.cuLaunchKernelEx = func(cfg unsafe.Pointer, f uintptr, params, extra unsafe.Pointer) cuResult {
		launches = append(launches, readConfig(f, cfg))
		ptrs := unsafe.Slice((*uintptr)(params), maxKernelArgs)
		for i := range ptrs {
			if want := uintptr(unsafe.Pointer(&be.argVals[i])); ptrs[i] != want {
				t.Fatalf("kernelParams[%d] = %#x, want the address of slot %d", i, ptrs[i], i)
			}
		}
		if extra != nil {
			t.Error("extra parameters passed")
		}
		return cuSuccess
	}
	fAxpb := m.(*module).funcs["t_axpb"]
	if n := cl.CoResidentClusters("t_axpb", 8, 256, 1024); n != 16 {
		t.Errorf("clusters of 8: %d, want 132/8 = 16 from the driver", n)
	}
	if len(attrs) != 0 {
		t.Errorf("clusters of 8 (portable) set attributes %v", attrs)
	}
	want := fakeCluster{f: fAxpb, grid: 8, block: 256, shared: 1024, cx: 8, cy: 1, cz: 1, stream: be.stream, attrID: launchAttrClusterDimension, numAttrs: 1}
	if len(queries) != 1 || queries[0] != want {
		t.Errorf("occupancy query %+v, want %+v", queries, want)
	}
	for range 2 {
		if n := cl.CoResidentClusters("t_axpb", 16, 256, 0); n != 8 {
			t.Errorf("clusters of 16: %d, want 8", n)
		}
	}
	if len(attrs) != 1 || attrs[0] != [3]int64{int64(fAxpb), funcAttrNonPortableCluster, 1} {
		t.Errorf("clusters of 16 set attributes %v, want the non-portable attribute once", attrs)
	}
	if n := cl.CoResidentClusters("t_axpb", 32, 256, 0); n != 0 {
		t.Errorf("clusters of 32: %d, want 0", n)
	}
	refuseAttr = true
	if n := cl.CoResidentClusters("t_inc", 16, 256, 0); n != 0 {
		t.Errorf("clusters of 16 with the attribute refused: %d, want 0", n)
	}
	const n = 512
	x, y := be.Alloc(n), be.Alloc(n)
	defer be.Free(x)
	defer be.Free(y)
	cl.LaunchCluster("t_axpb", 16, 8, 64, 256, compute.Ptr(compute.V(y), n), compute.Ptr(compute.V(x), n), compute.Int(n), compute.Float(2), compute.Float(1))
	want = fakeCluster{f: fAxpb, grid: 16, block: 64, shared: 256, cx: 8, cy: 1, cz: 1, stream: be.stream, attrID: launchAttrClusterDimension, numAttrs: 1}
	if len(launches) != 1 || launches[0] != want {
		t.Errorf("cluster launch %+v, want %+v", launches, want)
	}
	if be.argVals[2] != n || be.argVals[0] == 0 {
		t.Errorf("argument slots %v: want y, x, n = %d", be.argVals[:5], n)
	}
	mustPanic(t, "want a positive cluster size dividing the grid", func() {
		cl.LaunchCluster("t_axpb", 12, 8, 64, 0, compute.Ptr(compute.V(y), n), compute.Ptr(compute.V(x), n), compute.Int(n), compute.Float(2), compute.Float(1))
	})
	mustPanic(t, "cannot launch clusters", func() {
		cl.LaunchCluster("t_inc", 16, 16, 64, 0, compute.Ptr(compute.V(y), n), compute.Int(n))
	})

	old, _, err := newFakeInit(t, 80, false)
	if err != nil {
		t.Fatal(err)
	}
	old.drv.cuOccupancyMaxActiveClusters, old.drv.cuLaunchKernelEx = be.drv.cuOccupancyMaxActiveClusters, be.drv.cuLaunchKernelEx
	m80, err := old.Compile("cluster.cu", testModuleSrc, "t_axpb")
	if err != nil {
		t.Fatal(err)
	}
	if c := m80.(compute.ClusterLauncher).CoResidentClusters("t_axpb", 2, 256, 0); c != 0 {
		t.Errorf("sm_80: %d clusters, want 0", c)
	}
}

func mustPanic(t *testing.T, want string, fn func()) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil {
			t.Errorf("no panic, want one saying %q", want)
		} else if !strings.Contains(r.(string), want) {
			t.Errorf("panic %q, want one saying %q", r, want)
		}
	}()
	fn()
}

// TestGPUClusters runs the cluster exchange check on the GPU: on compute
// capability 9.0 and newer, clusters of 2, 4 and 8 blocks (portable) must
// run and exchange exactly; 16 (non-portable) runs where the device allows
// it. Older GPUs skip.
func TestGPUClusters(t *testing.T) {
	be := gpuOrSkip(t)
	if be.ccMajor < 9 {
		t.Skipf("compute capability %d.%d: no thread-block clusters", be.ccMajor, be.ccMinor)
	}
	ran := computetest.CheckClusters(t, be, []int{2, 4, 8, 16})
	for _, c := range []int{2, 4, 8} {
		if !slices.Contains(ran, c) {
			t.Errorf("clusters of %d did not run (CoResidentClusters 0); ran %v", c, ran)
		}
	}
	t.Logf("cluster sizes run: %v", ran)
}

// TestClusterSourceCompiles: the cluster check's kernel compiles with NVRTC
// for sm_80 (empty) and sm_90 (cluster barrier, rank and mapped stores).
func TestClusterSourceCompiles(t *testing.T) {
	nvrtcOrSkip(t)
	if _, err := CheckCompileFor("computetest/clusters.cu", computetest.ClusterSource, 80); err != nil {
		t.Fatal(err)
	}
	ptx, err := CheckCompileFor("computetest/clusters.cu", computetest.ClusterSource, 90)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"barrier.cluster.arrive", "barrier.cluster.wait", "mapa", "%cluster_ctarank", "%cluster_nctarank"} {
		if !strings.Contains(ptx, want) {
			t.Errorf("sm_90 PTX has no %s", want)
		}
	}
}
