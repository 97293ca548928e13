package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"unsafe"

	"github.com/wavecat/wavecat/compute"
)

// Options configure New.
type Options struct {
	// Device is the CUDA device ordinal (0 = first GPU).
	Device int
	// TF32 lets cuBLAS use TF32 tensor cores for the GEMMs (Ampere and
	// newer): several times faster, ~1e-3 relative error instead of fp32's
	// ~1e-6. Off by default so results match the CPU backend.
	TF32 bool
}

const (
	stagingBytes   = 8 << 20 // pinned host bounce buffer for Upload/Download
	maxKernelArgs  = 16
	maxPartials    = 1024 // blocks of a Dot/SumSquares reduction
	elementwiseMax = 65535
	cuErrUnsupPTX  = 222 // CUDA_ERROR_UNSUPPORTED_PTX_VERSION
)

// Backend is the CUDA implementation of compute.Backend. Every kernel is
// queued on one stream, so work runs in program order; Download, Dot,
// SumSquares and Sync wait for it. CUDA errors inside a kernel method panic
// (the interface has no error returns) with the failing call and the
// driver's error name. A Backend is safe for use by one goroutine at a time
// (a mutex serialises stray concurrent calls).
type Backend struct {
	mu sync.Mutex

	drv  *driverAPI
	blas *cublasAPI
	nv   *nvrtcAPI

	dev           int32
	ctx           uintptr
	ctxRetained   bool
	stream        uintptr
	handle        uintptr
	module        uintptr
	funcs         map[string]uintptr
	modules       map[string]*module // Compile's, by source
	devName       string
	ccMajor       int
	ccMinor       int
	sms           int
	totalMem      uint64
	driverVersion int
	cublasVersion int
	arch          string
	tf32          bool

	// Caching allocator: free device blocks by bucket size in bytes. Blocks
	// are reused in stream order, so a freed block is safe to hand out at
	// once (its last user and its next user run on the same stream).
	free        map[uint64][]uint64
	cachedBytes uint64
	liveBytes   uint64

	staging     unsafe.Pointer // pinned, stagingBytes
	stagingF    []float32
	stagingBusy bool // an async upload may still read staging

	args    unsafe.Pointer // pinned: maxKernelArgs values, their addresses, then a cluster launch's config (argsBytes)
	argVals []uint64

	partialDev  uint64 // maxPartials float64 on the device
	partialHost unsafe.Pointer
	partialF    []float64

	alpha, beta float32 // cuBLAS reads host scalars during the call

	// GemmSum's scratch, ones vector and cached pointer arrays (gemmsum.go).
	sumBuf, sumOnes compute.Buffer
	sumArrays       map[sumKey]compute.Buffer
}

var _ compute.Backend = (*Backend)(nil)

// New opens device opts.Device: loads libcuda, cuBLAS and NVRTC, retains the
// device's primary context (shared with any CUDA runtime in the process,
// e.g. PyTorch), creates a stream and a cuBLAS handle, and compiles the
// kernels for the device (PTX cached under os.UserCacheDir()/wavecat/cuda).
// It fails with a clear error, never a panic, when there is no driver, no
// GPU, or a library is missing.
func New(opts Options) (*Backend, error) {
	drv, count, err := initDriver()
	if err != nil {
		return nil, err
	}
	if opts.Device < 0 || opts.Device >= count {
		return nil, fmt.Errorf("cuda: device %d does not exist: %d CUDA device(s), ordinals 0..%d", opts.Device, count, count-1)
	}
	nv, err := loadNVRTC()
	if err != nil {
		return nil, err
	}
	blas, err := loadCUBLAS()
	if err != nil {
		return nil, err
	}

	be := &Backend{drv: drv, blas: blas, nv: nv, tf32: opts.TF32, free: map[uint64][]uint64{}, funcs: map[string]uintptr{}}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := be.init(opts.Device); err != nil {
		be.release()
		return nil, err
	}
	return be, nil
}

// DeviceCount is the number of CUDA GPUs this process sees (after
// CUDA_VISIBLE_DEVICES), with New's errors when there is no driver or no
// GPU. It creates no context, so a launcher can check before it starts one
// process per GPU.
func DeviceCount() (int, error) {
	_, n, err := initDriver()
	return n, err
}

// initDriver loads and initialises the driver and counts the devices.
func initDriver() (*driverAPI, int, error) {
	drv, err := loadDriver()
	if err != nil {
		return nil, 0, fmt.Errorf("cuda: no CUDA driver found (the NVIDIA driver's libcuda.so.1 could not be loaded):\n%w", err)
	}
	if r := drv.cuInit(0); r != cuSuccess {
		if r == cuErrorNoDevice {
			return nil, 0, fmt.Errorf("cuda: %w: the driver %s loaded but cuInit reports %s (no NVIDIA GPU visible to this process; check nvidia-smi and CUDA_VISIBLE_DEVICES)", ErrNoDevice, drv.lib.path, drv.errorName(r))
		}
		return nil, 0, fmt.Errorf("cuda: the CUDA driver %s failed to initialise: %w", drv.lib.path, drv.check("cuInit", r))
	}
	var count int32
	if err := drv.check("cuDeviceGetCount", drv.cuDeviceGetCount(&count)); err != nil {
		return nil, 0, err
	}
	if count == 0 {
		return nil, 0, fmt.Errorf("cuda: %w: the driver %s reports 0 devices", ErrNoDevice, drv.lib.path)
	}
	return drv, int(count), nil
}

// init does the device set-up of New on a locked OS thread.
func (be *Backend) init(ordinal int) error {
	d := be.drv
	if err := d.check("cuDeviceGet", d.cuDeviceGet(&be.dev, int32(ordinal))); err != nil {
		return err
	}
	var v int32
	if err := d.check("cuDriverGetVersion", d.cuDriverGetVersion(&v)); err != nil {
		return err
	}
	be.driverVersion = int(v)
	name := make([]byte, 256)
	if err := d.check("cuDeviceGetName", d.cuDeviceGetName(&name[0], int32(len(name)), be.dev)); err != nil {
		return err
	}
	be.devName = goString(unsafe.Pointer(&name[0]))
	for _, a := range []struct {
		attr int32
		dst  *int
	}{{attrComputeCapMajor, &be.ccMajor}, {attrComputeCapMinor, &be.ccMinor}, {attrMultiprocessors, &be.sms}} {
		if err := d.check("cuDeviceGetAttribute", d.cuDeviceGetAttribute(&v, a.attr, be.dev)); err != nil {
			return err
		}
		*a.dst = int(v)
	}
	if err := d.check("cuDeviceTotalMem_v2", d.cuDeviceTotalMem(&be.totalMem, be.dev)); err != nil {
		return err
	}
	if err := d.check("cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain(&be.ctx, be.dev)); err != nil {
		return err
	}
	be.ctxRetained = true
	if err := d.check("cuCtxSetCurrent", d.cuCtxSetCurrent(be.ctx)); err != nil {
		return err
	}
	if err := d.check("cuStreamCreate", d.cuStreamCreate(&be.stream, cuStreamNonBlocking)); err != nil {
		return err
	}

	b := be.blas
	if err := b.check("cublasCreate_v2", b.cublasCreate(&be.handle)); err != nil {
		return err
	}
	if err := b.check("cublasSetStream_v2", b.cublasSetStream(be.handle, be.stream)); err != nil {
		return err
	}
	mode := int32(cublasDefaultMath)
	if be.tf32 {
		mode = cublasTF32TensorMath
	}
	if err := b.check("cublasSetMathMode", b.cublasSetMathMode(be.handle, mode)); err != nil {
		return err
	}
	var bv int32
	if err := b.check("cublasGetVersion_v2", b.cublasGetVersion(be.handle, &bv)); err != nil {
		return err
	}
	be.cublasVersion = int(bv)

	if err := be.loadKernels(); err != nil {
		return err
	}
	return be.initBuffers()
}

// initBuffers allocates the pinned staging and kernel-argument areas and the
// device scratch of the reductions.
func (be *Backend) initBuffers() error {
	d := be.drv
	if err := d.check("cuMemHostAlloc", d.cuMemHostAlloc(&be.staging, stagingBytes, 0)); err != nil {
		return err
	}
	be.stagingF = unsafe.Slice((*float32)(be.staging), stagingBytes/4)
	if err := d.check("cuMemHostAlloc", d.cuMemHostAlloc(&be.args, argsBytes, 0)); err != nil {
		return err
	}
	be.argVals = unsafe.Slice((*uint64)(be.args), maxKernelArgs)
	ptrs := unsafe.Slice((*uintptr)(unsafe.Add(be.args, 8*maxKernelArgs)), maxKernelArgs)
	for i := range ptrs {
		ptrs[i] = uintptr(unsafe.Add(be.args, 8*i))
	}
	if err := d.check("cuMemHostAlloc", d.cuMemHostAlloc(&be.partialHost, 8*maxPartials, 0)); err != nil {
		return err
	}
	be.partialF = unsafe.Slice((*float64)(be.partialHost), maxPartials)
	if err := d.check("cuMemAlloc_v2", d.cuMemAlloc(&be.partialDev, 8*maxPartials)); err != nil {
		return err
	}
	return nil
}

// loadKernels compiles (or fetches from the disk cache) the PTX of
// kernels.cu and looks up every kernel.
func (be *Backend) loadKernels() error {
	sm, err := pickArch(be.ccMajor*10+be.ccMinor, be.nv.supportedArchs())
	if err != nil {
		return err
	}
	be.arch = fmt.Sprintf("compute_%d", sm)
	ptx, fromCache, err := cachedPTX(be.nv, be.arch, be.driverVersion)
	if err != nil {
		return err
	}
	r := be.drv.cuModuleLoadData(&be.module, unsafe.Pointer(&nulTerminated(ptx)[0]))
	if r != cuSuccess && fromCache {
		// A damaged cache entry: compile afresh.
		if ptx, _, err = be.nv.compile(kernelSource, "wavecat_kernels.cu", compileOptions(be.arch)); err != nil {
			return err
		}
		r = be.drv.cuModuleLoadData(&be.module, unsafe.Pointer(&nulTerminated(ptx)[0]))
	}
	if r == cuErrUnsupPTX {
		return fmt.Errorf("%w: NVRTC %s (%s) emits PTX newer than driver %d.%d accepts: update the NVIDIA driver or point WAVECAT_CUDA_LIBS at an older NVRTC",
			be.drv.check("cuModuleLoadData", r), be.nv.version(), be.nv.lib.path, be.driverVersion/1000, be.driverVersion%1000/10)
	}
	if err := be.drv.check("cuModuleLoadData", r); err != nil {
		return err
	}
	for _, name := range kernelNames {
		var f uintptr
		if err := be.drv.check("cuModuleGetFunction("+name+")", be.drv.cuModuleGetFunction(&f, be.module, name)); err != nil {
			return err
		}
		be.funcs[name] = f
	}
	return nil
}

func nulTerminated(b []byte) []byte {
	if len(b) == 0 || b[len(b)-1] != 0 {
		b = append(b, 0)
	}
	return b
}

// Close waits for queued work and releases the device resources the
// backend holds (cached blocks, pinned buffers, stream, cuBLAS handle,
// module, primary-context reference). Buffers still alive are freed with the
// context when its last reference goes.
func (be *Backend) Close() error {
	be.mu.Lock()
	defer be.mu.Unlock()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if be.ctx == 0 {
		return nil
	}
	var errs []error
	if r := be.drv.cuCtxSetCurrent(be.ctx); r != cuSuccess {
		errs = append(errs, be.drv.check("cuCtxSetCurrent", r))
	}
	if be.stream != 0 {
		errs = append(errs, be.drv.check("cuStreamSynchronize", be.drv.cuStreamSynchronize(be.stream)))
	}
	errs = append(errs, be.release())
	return errors.Join(errs...)
}

// release frees whatever init managed to create (also on its failure path).
func (be *Backend) release() error {
	d := be.drv
	var errs []error
	if be.ctx != 0 {
		_ = d.cuCtxSetCurrent(be.ctx)
	}
	// GemmSum's buffers are live allocations of the backend itself.
	own := []compute.Buffer{be.sumBuf, be.sumOnes}
	for _, b := range be.sumArrays {
		own = append(own, b)
	}
	for _, b := range own {
		if db, ok := b.(*buffer); ok && db.ptr != 0 {
			errs = append(errs, d.check("cuMemFree_v2", d.cuMemFree(db.ptr)))
			db.ptr = 0
		}
	}
	be.sumBuf, be.sumOnes, be.sumArrays = nil, nil, nil
	errs = append(errs, be.dropCache())
	if be.partialDev != 0 {
		errs = append(errs, d.check("cuMemFree_v2", d.cuMemFree(be.partialDev)))
		be.partialDev = 0
	}
	for _, p := range []*unsafe.Pointer{&be.staging, &be.args, &be.partialHost} {
		if *p != nil {
			errs = append(errs, d.check("cuMemFreeHost", d.cuMemFreeHost(*p)))
			*p = nil
		}
	}
	be.stagingF, be.argVals, be.partialF = nil, nil, nil
	if be.handle != 0 {
		errs = append(errs, be.blas.check("cublasDestroy_v2", be.blas.cublasDestroy(be.handle)))
		be.handle = 0
	}
	if be.module != 0 {
		errs = append(errs, d.check("cuModuleUnload", d.cuModuleUnload(be.module)))
		be.module = 0
	}
	for src, m := range be.modules {
		errs = append(errs, d.check("cuModuleUnload("+m.name+")", d.cuModuleUnload(m.mod)))
		delete(be.modules, src)
	}
	if be.stream != 0 {
		errs = append(errs, d.check("cuStreamDestroy_v2", d.cuStreamDestroy(be.stream)))
		be.stream = 0
	}
	if be.ctxRetained {
		errs = append(errs, d.check("cuDevicePrimaryCtxRelease_v2", d.cuDevicePrimaryCtxRelease(be.dev)))
		be.ctxRetained = false
	}
	be.ctx = 0
	return errors.Join(errs...)
}

// enter makes the backend's context current on a locked OS thread (CUDA
// contexts are per thread, goroutines migrate) and returns the matching
// exit: `defer be.enter()()`.
func (be *Backend) enter() func() {
	be.mu.Lock()
	runtime.LockOSThread()
	if be.ctx == 0 {
		runtime.UnlockOSThread()
		be.mu.Unlock()
		panic("cuda: backend used after Close")
	}
	if r := be.drv.cuCtxSetCurrent(be.ctx); r != cuSuccess {
		runtime.UnlockOSThread()
		be.mu.Unlock()
		panic(be.drv.check("cuCtxSetCurrent", r))
	}
	return be.leave
}

func (be *Backend) leave() {
	runtime.UnlockOSThread()
	be.mu.Unlock()
}

// must panics on a failed driver call.
func (be *Backend) must(call string, r cuResult) {
	if r != cuSuccess {
		panic(be.drv.check(call, r))
	}
}

// Name implements compute.Backend.
func (be *Backend) Name() string { return "cuda" }

// Describe names the GPU, the driver and the GEMM library and precision.
func (be *Backend) Describe() string {
	prec := "fp32"
	if be.tf32 {
		prec = "TF32 tensor cores"
	}
	blasPath := "?"
	if be.blas != nil && be.blas.lib != nil {
		blasPath = be.blas.lib.path
	}
	return fmt.Sprintf("cuda: %s (sm_%d%d, %d SMs, %.1f GiB), driver %d.%d, cuBLAS %d sgemm %s (%s), NVRTC %s kernels for %s",
		be.devName, be.ccMajor, be.ccMinor, be.sms, float64(be.totalMem)/(1<<30),
		be.driverVersion/1000, be.driverVersion%1000/10, be.cublasVersion, prec, blasPath, be.nv.version(), be.arch)
}

// Device returns the GPU's name and compute capability (e.g. 9, 0).
func (be *Backend) Device() (name string, major, minor int) {
	return be.devName, be.ccMajor, be.ccMinor
}

// buffer is device memory from the caching allocator.
type buffer struct {
	be     *Backend
	ptr    uint64
	n      int
	bucket uint64
}

func (b *buffer) Len() int { return b.n }

// bucketSize rounds a request up to its size class: 512 bytes minimum, then
// four classes per power of two, so at most 25% is wasted while freed
// blocks are likely to fit the next request of a similar size.
func bucketSize(nbytes uint64) uint64 {
	if nbytes <= 512 {
		return 512
	}
	p := uint64(1) << bits.Len64(nbytes-1) // smallest power of two >= nbytes
	step := p / 8
	for s := p/2 + step; s < p; s += step {
		if s >= nbytes {
			return s
		}
	}
	return p
}

// allocBytes returns a device block of bucketSize(nbytes); on out-of-memory
// it returns the cache to the driver and tries once more.
func (be *Backend) allocBytes(nbytes uint64) (ptr, bucket uint64) {
	bucket = bucketSize(nbytes)
	if l := be.free[bucket]; len(l) > 0 {
		ptr = l[len(l)-1]
		be.free[bucket] = l[:len(l)-1]
		be.cachedBytes -= bucket
		be.liveBytes += bucket
		return ptr, bucket
	}
	r := be.drv.cuMemAlloc(&ptr, bucket)
	if r == cuErrorOutOfMemory && be.cachedBytes > 0 {
		if err := be.dropCache(); err != nil {
			panic(err)
		}
		r = be.drv.cuMemAlloc(&ptr, bucket)
	}
	if r != cuSuccess {
		panic(fmt.Errorf("%w: allocating %d bytes with %d bytes in use on %s", be.drv.check("cuMemAlloc_v2", r), bucket, be.liveBytes, be.devName))
	}
	be.liveBytes += bucket
	return ptr, bucket
}

func (be *Backend) freeBytes(ptr, bucket uint64) {
	be.free[bucket] = append(be.free[bucket], ptr)
	be.cachedBytes += bucket
	be.liveBytes -= bucket
}

// dropCache returns every cached block to the driver, after the stream has
// finished with them.
func (be *Backend) dropCache() error {
	if be.cachedBytes == 0 {
		return nil
	}
	var errs []error
	if be.stream != 0 {
		errs = append(errs, be.drv.check("cuStreamSynchronize", be.drv.cuStreamSynchronize(be.stream)))
	}
	for b, l := range be.free {
		for _, p := range l {
			errs = append(errs, be.drv.check("cuMemFree_v2", be.drv.cuMemFree(p)))
		}
		delete(be.free, b)
	}
	be.cachedBytes = 0
	return errors.Join(errs...)
}

// Alloc returns a zero-filled device buffer of n float32s.
func (be *Backend) Alloc(n int) compute.Buffer {
	if n < 0 {
		panic(fmt.Sprintf("cuda: Alloc(%d): negative size", n))
	}
	if n == 0 {
		return &buffer{be: be}
	}
	defer be.enter()()
	ptr, bucket := be.allocBytes(uint64(n) * 4)
	be.must("cuMemsetD32Async", be.drv.cuMemsetD32Async(ptr, 0, uint64(n), be.stream))
	return &buffer{be: be, ptr: ptr, n: n, bucket: bucket}
}

// Free returns the memory to the cache; later use of the buffer panics in
// View.Check (its length becomes 0).
func (be *Backend) Free(b compute.Buffer) {
	db, ok := b.(*buffer)
	if !ok || db.be != be || db.ptr == 0 {
		return
	}
	defer be.enter()()
	be.freeBytes(db.ptr, db.bucket)
	db.ptr, db.n, db.bucket = 0, 0, 0
}

// dptr checks a view for n elements and returns its device address.
func (be *Backend) dptr(v compute.View, n int, what string) uint64 {
	v.Check(n, what)
	db, ok := v.Buf.(*buffer)
	if !ok || db.be != be {
		panic(fmt.Sprintf("cuda: %s: buffer of type %T does not belong to this CUDA backend", what, v.Buf))
	}
	return db.ptr + uint64(v.Off)*4
}

// waitStaging blocks until an earlier async upload has read the staging
// buffer.
func (be *Backend) waitStaging() {
	if be.stagingBusy {
		be.must("cuStreamSynchronize", be.drv.cuStreamSynchronize(be.stream))
		be.stagingBusy = false
	}
}

// Upload copies src to dst through the pinned staging buffer. It returns
// once src has been copied (src may be reused), possibly before the device
// has the data; later kernels see it (stream order).
func (be *Backend) Upload(dst compute.View, src []float32) {
	p := be.dptr(dst, len(src), "Upload dst")
	if len(src) == 0 {
		return
	}
	defer be.enter()()
	for off := 0; off < len(src); off += len(be.stagingF) {
		c := min(len(src)-off, len(be.stagingF))
		be.waitStaging()
		copy(be.stagingF[:c], src[off:off+c])
		be.must("cuMemcpyHtoDAsync_v2", be.drv.cuMemcpyHtoDAsync(p+uint64(off)*4, be.staging, uint64(c)*4, be.stream))
		be.stagingBusy = true
	}
}

// Download copies len(dst) elements from src, after all queued work.
func (be *Backend) Download(dst []float32, src compute.View) {
	p := be.dptr(src, len(dst), "Download src")
	if len(dst) == 0 {
		return
	}
	defer be.enter()()
	for off := 0; off < len(dst); off += len(be.stagingF) {
		c := min(len(dst)-off, len(be.stagingF))
		be.must("cuMemcpyDtoHAsync_v2", be.drv.cuMemcpyDtoHAsync(be.staging, p+uint64(off)*4, uint64(c)*4, be.stream))
		be.must("cuStreamSynchronize", be.drv.cuStreamSynchronize(be.stream))
		be.stagingBusy = false
		copy(dst[off:off+c], be.stagingF[:c])
	}
}

// Copy copies n elements; overlapping views behave like memmove (through a
// temporary block, since cuMemcpy does not promise that).
func (be *Backend) Copy(dst, src compute.View, n int) {
	pd := be.dptr(dst, n, "Copy dst")
	ps := be.dptr(src, n, "Copy src")
	if n == 0 || pd == ps {
		return
	}
	defer be.enter()()
	size := uint64(n) * 4
	if pd < ps+size && ps < pd+size {
		tmp, bucket := be.allocBytes(size)
		be.must("cuMemcpyDtoDAsync_v2", be.drv.cuMemcpyDtoDAsync(tmp, ps, size, be.stream))
		be.must("cuMemcpyDtoDAsync_v2", be.drv.cuMemcpyDtoDAsync(pd, tmp, size, be.stream))
		be.freeBytes(tmp, bucket)
		return
	}
	be.must("cuMemcpyDtoDAsync_v2", be.drv.cuMemcpyDtoDAsync(pd, ps, size, be.stream))
}

// Fill sets n elements to value (a 32-bit memset of its bit pattern).
func (be *Backend) Fill(dst compute.View, n int, value float32) {
	p := be.dptr(dst, n, "Fill dst")
	if n == 0 {
		return
	}
	defer be.enter()()
	be.must("cuMemsetD32Async", be.drv.cuMemsetD32Async(p, math.Float32bits(value), uint64(n), be.stream))
}

// Sync waits for every queued kernel and copy.
func (be *Backend) Sync() {
	defer be.enter()()
	be.must("cuStreamSynchronize", be.drv.cuStreamSynchronize(be.stream))
	be.stagingBusy = false
}

// Kernel argument encoders: every argument travels in an 8-byte slot; a
// 4-byte parameter reads the low half (little-endian).
func f32(x float32) uint64 { return uint64(math.Float32bits(x)) }
func i64(n int) uint64     { return uint64(int64(n)) }

// launch queues kernel name on the stream with the given grid and block
// sizes. The caller holds enter(). Parameter values live in pinned C memory
// (be.args), so no Go pointer is handed to the driver; cuLaunchKernel copies
// them before returning, so the slots can be reused at once.
func (be *Backend) launch(name string, grid, block int, args ...uint64) {
	f, ok := be.funcs[name]
	if !ok {
		panic("cuda: kernel " + name + " not loaded")
	}
	if len(args) != len(kernelSigs[name]) {
		panic(fmt.Sprintf("cuda: kernel %s takes %d arguments (%s), launched with %d", name, len(kernelSigs[name]), kernelSigs[name], len(args)))
	}
	copy(be.argVals, args)
	r := be.drv.cuLaunchKernel(f, uint32(grid), 1, 1, uint32(block), 1, 1, 0, be.stream, unsafe.Add(be.args, 8*maxKernelArgs), nil)
	be.must("cuLaunchKernel("+name+")", r)
}

// gridFor is the number of 256-thread blocks for n elements of a
// grid-stride kernel.
func gridFor(n int) int {
	return max(1, min((n+reductionBlock-1)/reductionBlock, elementwiseMax))
}

// elementwise checks the views and launches an n-element kernel; views are
// given with their sizes, then the scalar arguments.
func (be *Backend) elementwise(name string, n int, views []compute.View, scalars ...uint64) {
	var a [maxKernelArgs]uint64
	for i, v := range views {
		a[i] = be.dptr(v, n, name)
	}
	if n == 0 {
		return
	}
	k := len(views)
	a[k] = i64(n)
	k++
	k += copy(a[k:], scalars)
	defer be.enter()()
	be.launch(name, gridFor(n), reductionBlock, a[:k]...)
}

// Scale: x *= alpha.
func (be *Backend) Scale(x compute.View, n int, alpha float32) {
	be.elementwise(kScale, n, []compute.View{x}, f32(alpha))
}

// Axpy: y += alpha*x.
func (be *Backend) Axpy(y, x compute.View, n int, alpha float32) {
	be.elementwise(kAxpy, n, []compute.View{y, x}, f32(alpha))
}

// AddScaled: dst = (a + b)*alpha.
func (be *Backend) AddScaled(dst, a, b compute.View, n int, alpha float32) {
	be.elementwise(kAddScaled, n, []compute.View{dst, a, b}, f32(alpha))
}

// ReLU: dst = max(src, 0).
func (be *Backend) ReLU(dst, src compute.View, n int) {
	be.elementwise(kReLU, n, []compute.View{dst, src})
}

// ReLUBackward: dx = dy * (y > 0).
func (be *Backend) ReLUBackward(dx, dy, y compute.View, n int) {
	be.elementwise(kReLUBackward, n, []compute.View{dx, dy, y})
}

// reduce runs a partial-sum kernel and adds the per-block float64 partials
// on the host, in block order (deterministic).
func (be *Backend) reduce(name string, n int, ptrs ...uint64) float64 {
	if n == 0 {
		return 0
	}
	defer be.enter()()
	grid := max(1, min((n+reductionBlock-1)/reductionBlock, maxPartials))
	args := append(ptrs, i64(n), be.partialDev)
	be.launch(name, grid, reductionBlock, args...)
	be.must("cuMemcpyDtoHAsync_v2", be.drv.cuMemcpyDtoHAsync(be.partialHost, be.partialDev, uint64(grid)*8, be.stream))
	be.must("cuStreamSynchronize", be.drv.cuStreamSynchronize(be.stream))
	be.stagingBusy = false
	s := 0.0
	for _, v := range be.partialF[:grid] {
		s += v
	}
	return s
}

// Dot returns sum a*b accumulated in float64; it waits for the result.
func (be *Backend) Dot(a, b compute.View, n int) float64 {
	pa, pb := be.dptr(a, n, "Dot a"), be.dptr(b, n, "Dot b")
	return be.reduce(kDotPartial, n, pa, pb)
}

// SumSquares returns sum x*x in float64; it waits for the result.
func (be *Backend) SumSquares(x compute.View, n int) float64 {
	return be.reduce(kSumSqPartial, n, be.dptr(x, n, "SumSquares x"))
}

// AddBias: x[b][c][t] += bias[c].
func (be *Backend) AddBias(x, bias compute.View, batch, channels, t int) {
	checkDims("AddBias", batch, channels, t)
	px := be.dptr(x, batch*channels*t, "AddBias x")
	pb := be.dptr(bias, channels, "AddBias bias")
	n := batch * channels * t
	if n == 0 {
		return
	}
	defer be.enter()()
	be.launch(kAddBias, gridFor(n), reductionBlock, px, pb, i64(batch), i64(channels), i64(t))
}

// BiasGrad: dbias[c] += sum over b, t of dy[b][c][t] (one block per channel).
func (be *Backend) BiasGrad(dbias, dy compute.View, batch, channels, t int) {
	checkDims("BiasGrad", batch, channels, t)
	pd := be.dptr(dbias, channels, "BiasGrad dbias")
	py := be.dptr(dy, batch*channels*t, "BiasGrad dy")
	if channels == 0 || batch*t == 0 {
		return
	}
	defer be.enter()()
	be.launch(kBiasGrad, channels, reductionBlock, pd, py, i64(batch), i64(channels), i64(t))
}

func checkDims(what string, d ...int) {
	for _, x := range d {
		if x < 0 {
			panic(fmt.Sprintf("cuda: %s: negative size in %v", what, d))
		}
	}
}

// GatedTanhSigmoid: z = tanh(a) * sigmoid(b) over [batch][2n] segments.
func (be *Backend) GatedTanhSigmoid(z, pre compute.View, batch, n int) {
	checkDims("GatedTanhSigmoid", batch, n)
	pz := be.dptr(z, batch*n, "GatedTanhSigmoid z")
	pp := be.dptr(pre, 2*batch*n, "GatedTanhSigmoid pre")
	if batch*n == 0 {
		return
	}
	defer be.enter()()
	be.launch(kGated, gridFor(batch*n), reductionBlock, pz, pp, i64(batch), i64(n))
}

// GatedTanhSigmoidBackward writes dpre from dz.
func (be *Backend) GatedTanhSigmoidBackward(dpre, dz, pre compute.View, batch, n int) {
	checkDims("GatedTanhSigmoidBackward", batch, n)
	pd := be.dptr(dpre, 2*batch*n, "GatedTanhSigmoidBackward dpre")
	pz := be.dptr(dz, batch*n, "GatedTanhSigmoidBackward dz")
	pp := be.dptr(pre, 2*batch*n, "GatedTanhSigmoidBackward pre")
	if batch*n == 0 {
		return
	}
	defer be.enter()()
	be.launch(kGatedBackward, gridFor(batch*n), reductionBlock, pd, pz, pp, i64(batch), i64(n))
}

// Stretch: dst[r][t*s+j] = src[r][t].
func (be *Backend) Stretch(dst, src compute.View, rows, t, s int) {
	checkDims("Stretch", rows, t, s)
	pd := be.dptr(dst, rows*t*s, "Stretch dst")
	ps := be.dptr(src, rows*t, "Stretch src")
	if rows*t*s == 0 {
		return
	}
	defer be.enter()()
	be.launch(kStretch, gridFor(rows*t*s), reductionBlock, pd, ps, i64(rows), i64(t), i64(s))
}

// StretchBackward: dsrc[r][t] = sum_j ddst[r][t*s+j] (overwrites).
func (be *Backend) StretchBackward(dsrc, ddst compute.View, rows, t, s int) {
	checkDims("StretchBackward", rows, t, s)
	pd := be.dptr(dsrc, rows*t, "StretchBackward dsrc")
	ps := be.dptr(ddst, rows*t*s, "StretchBackward ddst")
	if rows*t == 0 {
		return
	}
	defer be.enter()()
	be.launch(kStretchBackward, gridFor(rows*t), reductionBlock, pd, ps, i64(rows), i64(t), i64(s))
}

func checkWidth(what string, width int) {
	if width <= 0 || width%2 == 0 {
		panic(fmt.Sprintf("cuda: %s: kernel width %d, want a positive odd width", what, width))
	}
}

// RowConvSame: dst[r][t] = sum_j w[j] * src[r][t + j - width/2], zero padded.
func (be *Backend) RowConvSame(dst, src, w compute.View, rows, t, width int) {
	checkDims("RowConvSame", rows, t)
	checkWidth("RowConvSame", width)
	pd := be.dptr(dst, rows*t, "RowConvSame dst")
	ps := be.dptr(src, rows*t, "RowConvSame src")
	pw := be.dptr(w, width, "RowConvSame w")
	if rows*t == 0 {
		return
	}
	defer be.enter()()
	be.launch(kRowConv, gridFor(rows*t), reductionBlock, pd, ps, pw, i64(rows), i64(t), i64(width))
}

// RowConvSameBackward overwrites dsrc and accumulates dw.
func (be *Backend) RowConvSameBackward(dsrc, dw, dy, src, w compute.View, rows, t, width int) {
	checkDims("RowConvSameBackward", rows, t)
	checkWidth("RowConvSameBackward", width)
	pds := be.dptr(dsrc, rows*t, "RowConvSameBackward dsrc")
	pdw := be.dptr(dw, width, "RowConvSameBackward dw")
	pdy := be.dptr(dy, rows*t, "RowConvSameBackward dy")
	ps := be.dptr(src, rows*t, "RowConvSameBackward src")
	pw := be.dptr(w, width, "RowConvSameBackward w")
	if rows*t == 0 {
		return
	}
	defer be.enter()()
	be.launch(kRowConvBwdSrc, gridFor(rows*t), reductionBlock, pds, pdy, pw, i64(rows), i64(t), i64(width))
	// As many row shares per tap as the float64 partials buffer holds,
	// one block each, at most one per row.
	if width > maxPartials {
		panic(fmt.Sprintf("cuda: RowConvSameBackward: kernel width %d above %d", width, maxPartials))
	}
	parts := max(1, min(rows, maxPartials/width))
	be.launch(kRowConvBwdW, width*parts, reductionBlock, be.partialDev, pdy, ps, i64(rows), i64(t), i64(width), i64(parts))
	be.launch(kRowConvWFinish, 1, reductionBlock, pdw, be.partialDev, i64(width), i64(parts))
}

// WeightNorm: w = g[o] * v / ||v[:, o, :]|| (one block per output row).
func (be *Backend) WeightNorm(w, g, v compute.View, groups, out, inner int) {
	checkDims("WeightNorm", groups, out, inner)
	n := groups * out * inner
	pw := be.dptr(w, n, "WeightNorm w")
	pg := be.dptr(g, out, "WeightNorm g")
	pv := be.dptr(v, n, "WeightNorm v")
	if n == 0 {
		return
	}
	defer be.enter()()
	be.launch(kWeightNorm, out, reductionBlock, pw, pg, pv, i64(groups), i64(out), i64(inner))
}

// WeightNormBackward accumulates dg and dv from dw.
func (be *Backend) WeightNormBackward(dg, dv, dw, g, v compute.View, groups, out, inner int) {
	checkDims("WeightNormBackward", groups, out, inner)
	n := groups * out * inner
	pdg := be.dptr(dg, out, "WeightNormBackward dg")
	pdv := be.dptr(dv, n, "WeightNormBackward dv")
	pdw := be.dptr(dw, n, "WeightNormBackward dw")
	pg := be.dptr(g, out, "WeightNormBackward g")
	pv := be.dptr(v, n, "WeightNormBackward v")
	if n == 0 {
		return
	}
	defer be.enter()()
	be.launch(kWeightNormBwd, out, reductionBlock, pdg, pdv, pdw, pg, pv, i64(groups), i64(out), i64(inner))
}

// adamScalars folds the bias corrections into two per-step constants
// (computed in float64 on the host, as PyTorch does): the step size
// lr/(1-beta1^t) and sqrt(1-beta2^t).
func adamScalars(p compute.AdamParams) (step, bc2s float32) {
	if p.Step < 1 {
		panic(fmt.Sprintf("cuda: Adam: Step = %d, want >= 1 (it is 1-based)", p.Step))
	}
	bc1 := 1 - math.Pow(float64(p.Beta1), float64(p.Step))
	bc2 := 1 - math.Pow(float64(p.Beta2), float64(p.Step))
	return float32(float64(p.LR) / bc1), float32(math.Sqrt(bc2))
}

// Adam updates param, m and v in place.
func (be *Backend) Adam(param, grad, m, v compute.View, n int, p compute.AdamParams) {
	step, bc2s := adamScalars(p)
	be.elementwise(kAdam, n, []compute.View{param, grad, m, v}, f32(p.Beta1), f32(p.Beta2), f32(p.Eps), f32(step), f32(bc2s))
}

// EMA: ema = decay*ema + (1-decay)*param.
func (be *Backend) EMA(ema, param compute.View, n int, decay float32) {
	be.elementwise(kEMA, n, []compute.View{ema, param}, f32(decay))
}

// Gemm: C = alpha*op(A)*op(B) + beta*C, row-major, through cublasSgemm_v2
// with the operands swapped (see toColMajor).
func (be *Backend) Gemm(transA, transB bool, m, n, k int, alpha float32, a compute.View, lda int, b compute.View, ldb int, beta float32, c compute.View, ldc int) {
	checkGemmDims("Gemm", transA, transB, m, n, k, lda, ldb, ldc)
	ar, ac := storedDims(transA, m, k)
	br, bc := storedDims(transB, k, n)
	pa := be.dptr(a, matExtent(ar, ac, lda), "Gemm A")
	pb := be.dptr(b, matExtent(br, bc, ldb), "Gemm B")
	pc := be.dptr(c, matExtent(m, n, ldc), "Gemm C")
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		be.scaleC(pc, 1, m, n, ldc, 0, beta)
		return
	}
	cg := toColMajor(transA, transB, m, n, k, lda, ldb, ldc, 0, 0, 0)
	first, second := cg.operands(pa, pb)
	defer be.enter()()
	be.alpha, be.beta = alpha, beta
	s := be.blas.cublasSgemm(be.handle, cublasOp(cg.TransA), cublasOp(cg.TransB), int32(cg.M), int32(cg.N), int32(cg.K),
		&be.alpha, first, int32(cg.LDA), second, int32(cg.LDB), &be.beta, pc, int32(cg.LDC))
	if err := be.blas.check("cublasSgemm_v2", s); err != nil {
		panic(err)
	}
}

// GemmStridedBatched runs batch GEMMs through cublasSgemmStridedBatched
// (stride 0 shares an operand).
func (be *Backend) GemmStridedBatched(transA, transB bool, m, n, k int, alpha float32, a compute.View, lda, strideA int, b compute.View, ldb, strideB int, beta float32, c compute.View, ldc, strideC int, batch int) {
	checkGemmDims("GemmStridedBatched", transA, transB, m, n, k, lda, ldb, ldc)
	if batch < 0 || strideA < 0 || strideB < 0 || strideC < 0 {
		panic(fmt.Sprintf("cuda: GemmStridedBatched: negative batch %d or stride (%d, %d, %d)", batch, strideA, strideB, strideC))
	}
	if batch == 0 {
		return
	}
	ar, ac := storedDims(transA, m, k)
	br, bc := storedDims(transB, k, n)
	cext := matExtent(m, n, ldc)
	if batch > 1 && strideC < cext {
		panic(fmt.Sprintf("cuda: GemmStridedBatched: strideC %d is smaller than one C (%d elements): batch items would write the same memory concurrently", strideC, cext))
	}
	pa := be.dptr(a, (batch-1)*strideA+matExtent(ar, ac, lda), "GemmStridedBatched A")
	pb := be.dptr(b, (batch-1)*strideB+matExtent(br, bc, ldb), "GemmStridedBatched B")
	pc := be.dptr(c, (batch-1)*strideC+cext, "GemmStridedBatched C")
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		be.scaleC(pc, batch, m, n, ldc, strideC, beta)
		return
	}
	if batch > 1<<31-1 {
		panic(fmt.Sprintf("cuda: GemmStridedBatched: batch %d above 2^31-1", batch))
	}
	cg := toColMajor(transA, transB, m, n, k, lda, ldb, ldc, strideA, strideB, strideC)
	first, second := cg.operands(pa, pb)
	defer be.enter()()
	be.alpha, be.beta = alpha, beta
	s := be.blas.cublasSgemmStridedBatched(be.handle, cublasOp(cg.TransA), cublasOp(cg.TransB), int32(cg.M), int32(cg.N), int32(cg.K),
		&be.alpha, first, int32(cg.LDA), int64(cg.StrideA), second, int32(cg.LDB), int64(cg.StrideB), &be.beta, pc, int32(cg.LDC), int64(cg.StrideC), int32(batch))
	if err := be.blas.check("cublasSgemmStridedBatched", s); err != nil {
		panic(err)
	}
}

// scaleC does C = beta*C for a GEMM with k = 0 (nothing to multiply):
// BLAS defines that case, but cuBLAS's handling of it is not documented.
func (be *Backend) scaleC(pc uint64, batch, m, n, ldc, strideC int, beta float32) {
	if beta == 1 {
		return
	}
	defer be.enter()()
	be.launch(kGemmScaleC, gridFor(batch*m*n), reductionBlock, pc, i64(batch), i64(m), i64(n), i64(ldc), i64(strideC), f32(beta))
}

func cublasOp(trans bool) int32 {
	if trans {
		return cublasOpT
	}
	return cublasOpN
}
