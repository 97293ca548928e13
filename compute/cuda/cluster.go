package cuda

import (
	"fmt"
	"unsafe"

	"github.com/wavecat/wavecat/compute"
)

// Thread-block cluster launches (compute.ClusterLauncher), for compute
// capability 9.0 and newer: cuLaunchKernelEx with a cluster-dimension
// attribute, so a kernel needs no compile-time __cluster_dims__ and the
// host picks the cluster size the device runs.

var _ compute.ClusterLauncher = (*module)(nil)

// cuLaunchConfig mirrors CUlaunchConfig (cuda.h, CUDA 12.0): 56 bytes.
type cuLaunchConfig struct {
	gridX, gridY, gridZ    uint32
	blockX, blockY, blockZ uint32
	sharedBytes            uint32
	_                      uint32
	stream                 uintptr
	attrs                  unsafe.Pointer
	numAttrs               uint32
	_                      uint32
}

// cuLaunchAttribute mirrors CUlaunchAttribute: an id, then a 64-byte value
// union of which a cluster dimension uses the first 12 bytes: 72 bytes.
type cuLaunchAttribute struct {
	id      uint32
	_       uint32
	x, y, z uint32
	_       [64 - 12]byte
}

const (
	launchAttrClusterDimension = 4  // CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION
	funcAttrNonPortableCluster = 14 // CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED
	portableClusterBlocks      = 8  // the largest cluster every sm_90 device runs; more needs funcAttrNonPortableCluster
	maxClusterBlocks           = 16 // the largest an H100/H200 runs (non-portable)
	launchConfigOff            = 16 * maxKernelArgs
	launchAttrOff              = launchConfigOff + 64
	argsBytes                  = launchAttrOff + 128 // be.args: values, addresses, config, attribute
)

// clusterConfig writes a launch config for grid blocks of block threads in
// clusters of cluster blocks into the pinned argument area (so no Go
// pointer reaches the driver) and returns it. The caller holds the backend.
func (be *Backend) clusterConfig(grid, cluster, block, sharedBytes int) unsafe.Pointer {
	cfg := (*cuLaunchConfig)(unsafe.Add(be.args, launchConfigOff))
	attr := (*cuLaunchAttribute)(unsafe.Add(be.args, launchAttrOff))
	*attr = cuLaunchAttribute{id: launchAttrClusterDimension, x: uint32(cluster), y: 1, z: 1}
	*cfg = cuLaunchConfig{gridX: uint32(grid), gridY: 1, gridZ: 1, blockX: uint32(block), blockY: 1, blockZ: 1,
		sharedBytes: uint32(sharedBytes), stream: be.stream, attrs: unsafe.Pointer(attr), numAttrs: 1}
	return unsafe.Pointer(cfg)
}

// clusterReady says whether kernel f can be launched in clusters of
// cluster blocks at all: a device of compute capability 9.0 or newer, a
// driver with the cluster entry points, and for clusters above the
// portable size the function's non-portable attribute set (once per
// function; a driver that refuses it answers false).
func (m *module) clusterReady(kernel string, cluster int) bool {
	be, d := m.be, m.be.drv
	f, ok := m.funcs[kernel]
	if !ok || cluster < 1 || cluster > maxClusterBlocks || be.ccMajor < 9 ||
		d.cuLaunchKernelEx == nil || d.cuOccupancyMaxActiveClusters == nil {
		return false
	}
	if cluster > portableClusterBlocks {
		if m.nonPortable == nil {
			m.nonPortable = map[string]bool{}
		}
		set, tried := m.nonPortable[kernel]
		if !tried {
			set = d.cuFuncSetAttribute != nil && d.cuFuncSetAttribute(f, funcAttrNonPortableCluster, 1) == cuSuccess
			m.nonPortable[kernel] = set
		}
		return set
	}
	return true
}

// CoResidentClusters implements compute.ClusterLauncher with the driver's
// cluster occupancy (cuOccupancyMaxActiveClusters); 0 where clusters of
// that size cannot run.
func (m *module) CoResidentClusters(kernel string, cluster, block, sharedBytes int) int {
	f, ok := m.occupancyFunc(kernel, block, sharedBytes)
	if !ok {
		return 0
	}
	defer m.be.enter()()
	if !m.clusterReady(kernel, cluster) {
		return 0
	}
	var n int32
	cfg := m.be.clusterConfig(cluster, cluster, block, sharedBytes)
	if m.be.drv.cuOccupancyMaxActiveClusters(&n, f, cfg) != cuSuccess || n < 0 {
		return 0
	}
	return int(n)
}

// LaunchCluster implements compute.ClusterLauncher.
func (m *module) LaunchCluster(kernel string, grid, cluster, block, sharedBytes int, args ...compute.Arg) {
	if cluster < 1 || grid%cluster != 0 {
		panic(fmt.Sprintf("cuda: %s: kernel %s launched as %d blocks in clusters of %d: want a positive cluster size dividing the grid", m.name, kernel, grid, cluster))
	}
	f, vals := m.launchArgs(kernel, block, args)
	if grid <= 0 || block <= 0 {
		return
	}
	be := m.be
	defer be.enter()()
	if !m.clusterReady(kernel, cluster) {
		panic(fmt.Sprintf("cuda: %s: kernel %s: this device or driver cannot launch clusters of %d blocks (CoResidentClusters says which it can)", m.name, kernel, cluster))
	}
	copy(be.argVals, vals[:len(args)])
	r := be.drv.cuLaunchKernelEx(be.clusterConfig(grid, cluster, block, sharedBytes), f, unsafe.Add(be.args, 8*maxKernelArgs), nil)
	be.must("cuLaunchKernelEx("+kernel+")", r)
}
