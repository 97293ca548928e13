package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/computetest"
)

// fakeGPU stands in for libcuda and cuBLAS so the Backend's own code (view
// checks, address arithmetic, the allocator, staging, the GEMM operand swap,
// kernel argument packing) runs without a GPU. Device memory is host
// memory (one Go byte slice per allocation, so its addresses are real);
// every access is bounds-checked against the live allocations, so an
// address computed wrongly fails the test. cuBLAS calls run the
// column-major reference sgemm. Kernels run on the CPU when kernels.cu could
// be built for it (cpusim_test.go); otherwise the reductions and the k = 0
// GEMM are emulated in Go and the rest only recorded.
type fakeGPU struct {
	t        *testing.T
	be       *Backend
	live     map[uint64][]byte // address -> allocation
	host     [][]byte          // keeps fake pinned memory alive
	allocs   int
	limit    uint64 // cuMemAlloc fails above this many live bytes (0: none)
	names    map[uintptr]string
	launches []launchRec
	// sim runs a kernel on the CPU build of kernels.cu (nil: not built).
	sim func(name string, grid, block uint32, params unsafe.Pointer) int32
}

type launchRec struct {
	name        string
	grid, block uint32
	args        []uint64
}

func (f *fakeGPU) liveBytes() uint64 {
	s := uint64(0)
	for _, b := range f.live {
		s += uint64(len(b))
	}
	return s
}

// region returns the bytes at [addr, addr+size), which must lie inside one
// live allocation.
func (f *fakeGPU) region(addr, size uint64, what string) []byte {
	for a, b := range f.live {
		if addr >= a && addr+size <= a+uint64(len(b)) {
			return b[addr-a : addr-a+size]
		}
	}
	f.t.Fatalf("%s: [%#x, +%d) is not inside a live device allocation", what, addr, size)
	return nil
}

func (f *fakeGPU) floats(addr uint64, n int, what string) []float32 {
	if n == 0 {
		return nil
	}
	b := f.region(addr, uint64(n)*4, what)
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
}

func newFakeBackend(t *testing.T) (*Backend, *fakeGPU) {
	f := &fakeGPU{t: t, live: map[uint64][]byte{}, names: map[uintptr]string{}}
	d := &driverAPI{lib: &library{path: "fake-libcuda"}}
	ok := cuSuccess
	d.cuCtxSetCurrent = func(ctx uintptr) cuResult {
		if ctx != 1 {
			return 201 // CUDA_ERROR_INVALID_CONTEXT
		}
		return ok
	}
	d.cuStreamSynchronize = func(uintptr) cuResult { return ok }
	d.cuMemAlloc = func(p *uint64, size uint64) cuResult {
		if f.limit > 0 && f.liveBytes()+size > f.limit {
			return cuErrorOutOfMemory
		}
		f.allocs++
		b := make([]byte, (size+255)&^255)
		// Fresh memory is garbage, not zeros, so a missing memset shows.
		for i := range b {
			b[i] = 0xA5
		}
		*p = uint64(uintptr(unsafe.Pointer(&b[0])))
		f.live[*p] = b
		return ok
	}
	d.cuMemFree = func(p uint64) cuResult {
		if _, found := f.live[p]; !found {
			t.Errorf("cuMemFree(%#x): not allocated", p)
		}
		delete(f.live, p)
		return ok
	}
	d.cuMemHostAlloc = func(p *unsafe.Pointer, size uint64, _ uint32) cuResult {
		b := make([]byte, size)
		f.host = append(f.host, b)
		*p = unsafe.Pointer(&b[0])
		return ok
	}
	d.cuMemFreeHost = func(unsafe.Pointer) cuResult { return ok }
	d.cuMemcpyHtoDAsync = func(dst uint64, src unsafe.Pointer, size uint64, _ uintptr) cuResult {
		copy(f.region(dst, size, "HtoD dst"), unsafe.Slice((*byte)(src), size))
		return ok
	}
	d.cuMemcpyDtoHAsync = func(dst unsafe.Pointer, src uint64, size uint64, _ uintptr) cuResult {
		copy(unsafe.Slice((*byte)(dst), size), f.region(src, size, "DtoH src"))
		return ok
	}
	d.cuMemcpyDtoDAsync = func(dst, src, size uint64, _ uintptr) cuResult {
		if dst < src+size && src < dst+size {
			t.Errorf("cuMemcpyDtoDAsync with overlapping ranges (undefined on a GPU): dst %#x src %#x size %d", dst, src, size)
		}
		copy(f.region(dst, size, "DtoD dst"), f.region(src, size, "DtoD src"))
		return ok
	}
	d.cuMemsetD32Async = func(dst uint64, v uint32, n uint64, _ uintptr) cuResult {
		b := f.region(dst, n*4, "memset")
		for i := uint64(0); i < n; i++ {
			binary.LittleEndian.PutUint32(b[4*i:], v)
		}
		return ok
	}
	d.cuLaunchKernel = func(fn uintptr, gx, gy, gz, bx, by, bz, shmem uint32, _ uintptr, params, extra unsafe.Pointer) cuResult {
		name, found := f.names[fn]
		if !found {
			t.Fatalf("launch of unknown function %#x", fn)
		}
		if gy != 1 || gz != 1 || by != 1 || bz != 1 || shmem != 0 || extra != nil || gx == 0 || bx == 0 {
			t.Errorf("%s: odd launch grid (%d,%d,%d) block (%d,%d,%d) shmem %d", name, gx, gy, gz, bx, by, bz, shmem)
		}
		// The parameter array must point at the value slots in order.
		ptrs := unsafe.Slice((*uintptr)(params), maxKernelArgs)
		for i := range ptrs {
			if want := uintptr(unsafe.Pointer(&f.be.argVals[i])); ptrs[i] != want {
				t.Fatalf("%s: kernelParams[%d] = %#x, want the address of slot %d (%#x)", name, i, ptrs[i], i, want)
			}
		}
		sig := kernelSigs[name]
		args := slices.Clone(f.be.argVals[:len(sig)])
		for i, k := range sig {
			if k == 'p' {
				f.region(args[i], 4, fmt.Sprintf("%s pointer argument %d", name, i))
			}
		}
		f.launches = append(f.launches, launchRec{name, gx, bx, args})
		if f.sim != nil {
			if r := f.sim(name, gx, bx, params); r != 0 {
				t.Fatalf("%s: CPU build of the kernel failed (%d)", name, r)
			}
			return ok
		}
		f.emulate(name, gx, bx, args)
		return ok
	}
	d.cuGetErrorName = func(r cuResult, s *unsafe.Pointer) cuResult {
		b := []byte(fmt.Sprintf("CUDA_ERROR_FAKE_%d\x00", r))
		f.host = append(f.host, b)
		*s = unsafe.Pointer(&b[0])
		return ok
	}
	d.cuStreamDestroy = func(uintptr) cuResult { return ok }
	d.cuModuleUnload = func(uintptr) cuResult { return ok }
	d.cuDevicePrimaryCtxRelease = func(int32) cuResult { return ok }

	bl := &cublasAPI{lib: &library{path: "fake-libcublas"}}
	bl.cublasDestroy = func(uintptr) cublasStatus { return 0 }
	bl.cublasSgemm = func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32) cublasStatus {
		return f.sgemm(ta, tb, m, n, k, *alpha, a, lda, b, ldb, *beta, c, ldc)
	}
	bl.cublasSgemmStridedBatched = func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uint64, lda int32, sa int64, b uint64, ldb int32, sb int64, beta *float32, c uint64, ldc int32, sc int64, batch int32) cublasStatus {
		for i := int64(0); i < int64(batch); i++ {
			if s := f.sgemm(ta, tb, m, n, k, *alpha, a+uint64(i*sa*4), lda, b+uint64(i*sb*4), ldb, *beta, c+uint64(i*sc*4), ldc); s != 0 {
				return s
			}
		}
		return 0
	}

	bl.cublasSgemmBatched = func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32, batch int32) cublasStatus {
		ptr := func(arr uint64, i int32) uint64 {
			return binary.LittleEndian.Uint64(f.region(arr+8*uint64(i), 8, "cublasSgemmBatched pointer array"))
		}
		for i := int32(0); i < batch; i++ {
			if s := f.sgemm(ta, tb, m, n, k, *alpha, ptr(a, i), lda, ptr(b, i), ldb, *beta, ptr(c, i), ldc); s != 0 {
				return s
			}
		}
		return 0
	}

	be := &Backend{drv: d, blas: bl, ctx: 1, stream: 2, handle: 3, devName: "FakeGPU", sms: 132, free: map[uint64][]uint64{}, funcs: map[string]uintptr{}}
	for i, name := range kernelNames {
		id := uintptr(0x1000 + i)
		be.funcs[name] = id
		f.names[id] = name
	}
	f.be = be
	if err := be.initBuffers(); err != nil {
		t.Fatal(err)
	}
	return be, f
}

// sgemm runs the reference column-major sgemm on fake memory.
func (f *fakeGPU) sgemm(ta, tb, m, n, k int32, alpha float32, a uint64, lda int32, b uint64, ldb int32, beta float32, c uint64, ldc int32) cublasStatus {
	rowsA, colsA := int(m), int(k)
	if ta == cublasOpT {
		rowsA, colsA = int(k), int(m)
	}
	rowsB, colsB := int(k), int(n)
	if tb == cublasOpT {
		rowsB, colsB = int(n), int(k)
	}
	ext := func(rows, cols, ld int) int { // column-major extent
		if rows == 0 || cols == 0 {
			return 0
		}
		return (cols-1)*ld + rows
	}
	if lda < 1 || ldb < 1 || ldc < 1 || int(lda) < rowsA || int(ldb) < rowsB || int(ldc) < int(m) {
		return 7
	}
	A := f.floats(a, ext(rowsA, colsA, int(lda)), "sgemm A")
	B := f.floats(b, ext(rowsB, colsB, int(ldb)), "sgemm B")
	C := f.floats(c, ext(int(m), int(n), int(ldc)), "sgemm C")
	if err := colSgemm(ta == cublasOpT, tb == cublasOpT, int(m), int(n), int(k), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc)); err != nil {
		return 7
	}
	return 0
}

// emulate runs the reduction kernels: each block b sums the grid-stride
// elements its threads own, as the CUDA code does.
func (f *fakeGPU) emulate(name string, grid, block uint32, args []uint64) {
	var x, y []float32
	var n int
	var out uint64
	switch name {
	case kGemmScaleC:
		batch, m, n, ldc, sc := int(args[1]), int(args[2]), int(args[3]), int(args[4]), int(args[5])
		beta := math.Float32frombits(uint32(args[6]))
		c := f.floats(args[0], (batch-1)*sc+matExtent(m, n, ldc), "scale C")
		for b := 0; b < batch; b++ {
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					p := &c[b*sc+i*ldc+j]
					if beta == 0 {
						*p = 0
					} else {
						*p *= beta
					}
				}
			}
		}
		return
	case kDotPartial:
		n = int(args[2])
		x, y, out = f.floats(args[0], n, "dot a"), f.floats(args[1], n, "dot b"), args[3]
	case kSumSqPartial:
		n = int(args[1])
		x, out = f.floats(args[0], n, "sumsq x"), args[2]
		y = x
	default:
		return
	}
	part := f.region(out, uint64(grid)*8, "partials")
	stride := int(grid * block)
	for b := 0; b < int(grid); b++ {
		s := 0.0
		for th := 0; th < int(block); th++ {
			for i := b*int(block) + th; i < n; i += stride {
				s += float64(x[i]) * float64(y[i])
			}
		}
		binary.LittleEndian.PutUint64(part[8*b:], math.Float64bits(s))
	}
}

func download(be *Backend, v compute.View, n int) []float32 {
	out := make([]float32, n)
	be.Download(out, v)
	return out
}

// TestFakeMemory: the conformance suite's memory sequence (including the
// overlapping Copy that must act like memmove), through the real Backend.
func TestFakeMemory(t *testing.T) {
	be, _ := newFakeBackend(t)
	buf := be.Alloc(10)
	if got := download(be, compute.V(buf), 10); !slices.Equal(got, make([]float32, 10)) {
		t.Fatalf("Alloc not zero-filled: %v", got)
	}
	be.Upload(compute.V(buf).At(2), []float32{1, 2, 3, 4})
	be.Fill(compute.V(buf).At(7), 3, 2.5)
	be.Copy(compute.V(buf).At(0), compute.V(buf).At(3), 2)
	be.Copy(compute.V(buf).At(3), compute.V(buf).At(2), 3)
	be.Copy(compute.V(buf).At(1), compute.V(buf).At(1), 5) // no-op onto itself
	be.Sync()
	want := []float32{2, 3, 1, 1, 2, 3, 0, 2.5, 2.5, 2.5}
	if got := download(be, compute.V(buf), 10); !slices.Equal(got, want) {
		t.Fatalf("memory ops: got %v, want %v", got, want)
	}
	be.Fill(compute.V(buf), 2, float32(math.Inf(-1)))
	if got := download(be, compute.V(buf), 3); !math.IsInf(float64(got[1]), -1) || got[2] != 1 {
		t.Fatalf("Fill(-Inf, 2) = %v", got)
	}
}

// TestFakeStagingChunks: transfers larger than the pinned staging buffer go
// through it in pieces and arrive intact, at an offset.
func TestFakeStagingChunks(t *testing.T) {
	be, _ := newFakeBackend(t)
	n := stagingBytes/4*2 + 1234
	src := make([]float32, n)
	for i := range src {
		src[i] = float32(i)
	}
	buf := be.Alloc(n + 5)
	be.Upload(compute.V(buf).At(5), src)
	got := download(be, compute.V(buf).At(5), n)
	for i := range got {
		if got[i] != src[i] {
			t.Fatalf("round trip of %d floats: [%d] = %g, want %g", n, i, got[i], src[i])
		}
	}
	if head := download(be, compute.V(buf), 5); !slices.Equal(head, make([]float32, 5)) {
		t.Fatalf("upload at offset 5 touched the first 5 elements: %v", head)
	}
}

// TestFakeAllocator: freed blocks are reused for requests of the same size
// class (and re-zeroed), use after Free panics, and an out-of-memory
// allocation returns the cache to the driver and retries.
func TestFakeAllocator(t *testing.T) {
	be, f := newFakeBackend(t)
	a := be.Alloc(1000)
	be.Upload(compute.V(a), []float32{7, 7, 7})
	addr := a.(*buffer).ptr
	be.Free(a)
	before := f.allocs
	b := be.Alloc(900) // 3600 bytes: same class as 4000
	if b.(*buffer).ptr != addr || f.allocs != before {
		t.Errorf("Alloc after Free: new block %#x (cuMemAlloc calls %d -> %d), want reuse of %#x", b.(*buffer).ptr, before, f.allocs, addr)
	}
	if got := download(be, compute.V(b), 3); !slices.Equal(got, []float32{0, 0, 0}) {
		t.Errorf("reused block not zero-filled: %v", got)
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "outside buffer") {
				t.Errorf("use after Free: panic %v, want outside buffer", r)
			}
		}()
		be.Scale(compute.V(a), 1, 2)
	}()
	be.Free(b)

	// 4 KiB cached; allow only 8 KiB live: a 6 KiB request must drop it.
	f.limit = f.liveBytes() + 8192 - bucketSize(4000)
	c := be.Alloc(1500)
	if be.cachedBytes != 0 {
		t.Errorf("after an out-of-memory retry, %d bytes still cached", be.cachedBytes)
	}
	if _, cached := f.live[addr]; cached {
		t.Errorf("cached block %#x was not returned to the driver", addr)
	}
	be.Free(c)

	f.limit = 1
	be.dropCache()
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "CUDA_ERROR_FAKE_2") || !strings.Contains(fmt.Sprint(r), "cuMemAlloc_v2") {
				t.Errorf("allocation beyond memory: panic %v, want cuMemAlloc_v2 and the error name", r)
			}
		}()
		be.Alloc(10)
	}()
}

func TestBucketSize(t *testing.T) {
	prev := uint64(0)
	for n := uint64(1); n < 1<<24; n = n*9/8 + 1 {
		b := bucketSize(n)
		if b < n || (n > 512 && float64(b) > 1.25*float64(n)+1) {
			t.Fatalf("bucketSize(%d) = %d: want >= n and at most 25%% waste", n, b)
		}
		if b < prev {
			t.Fatalf("bucketSize not monotonic at %d: %d < %d", n, b, prev)
		}
		prev = b
	}
	if bucketSize(4000) != bucketSize(3600) {
		t.Errorf("4000 and 3600 bytes in different classes (%d, %d)", bucketSize(4000), bucketSize(3600))
	}
}

// TestFakeGemm: row-major Gemm and GemmStridedBatched through the backend's
// operand swap and the fake cuBLAS (column-major reference) match the
// row-major definition, with views at offsets and padded leading dimensions.
func TestFakeGemm(t *testing.T) {
	be, _ := newFakeBackend(t)
	r := rand.New(rand.NewPCG(3, 4))
	for _, tA := range []bool{false, true} {
		for _, tB := range []bool{false, true} {
			m, n, k, batch := 5, 7, 3, 3
			ar, ac := storedDims(tA, m, k)
			br, bc := storedDims(tB, k, n)
			lda, ldb, ldc := ac+2, bc+1, n+3
			sa, sb, sc := 0, matExtent(br, bc, ldb)+4, matExtent(m, n, ldc)+1
			a := randSlice(r, matExtent(ar, ac, lda))
			b := randSlice(r, (batch-1)*sb+matExtent(br, bc, ldb))
			c := randSlice(r, (batch-1)*sc+matExtent(m, n, ldc))
			av, bv, cv := upload(be, a, 3), upload(be, b, 1), upload(be, c, 2)

			be.Gemm(tA, tB, m, n, k, 1.5, av, lda, bv, ldb, 0.5, cv, ldc)
			want := computetest.RefGemm(tA, tB, m, n, k, 1.5, a, lda, b, ldb, 0.5, c, ldc)
			name := fmt.Sprintf("Gemm transA=%v transB=%v", tA, tB)
			assertClose(t, name, download(be, cv, len(c)), want, 1e-5)

			be.Upload(cv, c)
			be.GemmStridedBatched(tA, tB, m, n, k, -1, av, lda, sa, bv, ldb, sb, 1, cv, ldc, sc, batch)
			wantB := slices.Clone(want)
			for i := range wantB {
				wantB[i] = float64(c[i])
			}
			for i := 0; i < batch; i++ {
				item := computetest.RefGemm(tA, tB, m, n, k, -1, a[i*sa:], lda, b[i*sb:], ldb, 1, c[i*sc:], ldc)
				for j := 0; j < matExtent(m, n, ldc); j++ {
					if j%ldc < n {
						wantB[i*sc+j] = item[j]
					}
				}
			}
			assertClose(t, "Batched "+name, download(be, cv, len(c)), wantB, 1e-5)
		}
	}
}

// TestFakeGemmKZero: with k = 0 the product is empty, C = beta*C on the
// m x n window only (padding kept), beta = 0 clears even NaN, beta = 1
// launches nothing, and cuBLAS is not called.
func TestFakeGemmKZero(t *testing.T) {
	be, f := newFakeBackend(t)
	nan := float32(math.NaN())
	c := []float32{1, 2, 9, 3, 4, 9, nan, 5, 9}
	cv := upload(be, c, 0)
	av := upload(be, []float32{1}, 0)
	be.blas.cublasSgemm = func(uintptr, int32, int32, int32, int32, int32, *float32, uint64, int32, uint64, int32, *float32, uint64, int32) cublasStatus {
		t.Error("cuBLAS called for k = 0")
		return 0
	}
	be.Gemm(false, false, 2, 2, 0, 1, av, 1, av, 2, 0.5, cv, 3)
	want := []float32{0.5, 1, 9, 1.5, 2, 9, nan, 5, 9}
	got := download(be, cv, 9)
	for i := range want {
		if got[i] != want[i] && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(want[i]))) {
			t.Fatalf("Gemm k=0 beta 0.5: %v, want %v", got, want)
		}
	}
	be.GemmStridedBatched(false, false, 1, 2, 0, 1, av, 1, 0, av, 2, 0, 0, cv, 3, 6, 2)
	want = []float32{0, 0, 9, 1.5, 2, 9, 0, 0, 9}
	if got := download(be, cv, 9); !slices.Equal(got, want) {
		t.Fatalf("batched k=0 beta 0: %v, want %v", got, want)
	}
	f.launches = nil
	be.Gemm(false, false, 2, 2, 0, 1, av, 1, av, 2, 1, cv, 3)
	if len(f.launches) != 0 {
		t.Errorf("k=0 with beta 1 launched %d kernels", len(f.launches))
	}
}

// upload puts data in a new buffer after pad elements and returns its view.
func upload(be *Backend, data []float32, pad int) compute.View {
	buf := be.Alloc(len(data) + pad)
	v := compute.V(buf).At(pad)
	be.Upload(v, data)
	return v
}

// TestFakeReductions: Dot and SumSquares sum the per-block float64 partials
// (the fake device computes them like the kernel would) for sizes that use
// one block, several, and the maximum number of partials.
func TestFakeReductions(t *testing.T) {
	be, _ := newFakeBackend(t)
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 300, 1 << 19} {
		a, b := randSlice(r, n), randSlice(r, n)
		av, bv := upload(be, a, 1), upload(be, b, 0)
		var dot, ss float64
		for i := range a {
			dot += float64(a[i]) * float64(b[i])
			ss += float64(a[i]) * float64(a[i])
		}
		if got := be.Dot(av, bv, n); math.Abs(got-dot) > 1e-9*(1+math.Abs(dot)) {
			t.Errorf("Dot n=%d = %v, want %v", n, got, dot)
		}
		if got := be.SumSquares(av, n); math.Abs(got-ss) > 1e-9*ss {
			t.Errorf("SumSquares n=%d = %v, want %v", n, got, ss)
		}
	}
	if got := be.Dot(compute.V(be.Alloc(1)), compute.V(be.Alloc(1)), 0); got != 0 {
		t.Errorf("Dot of 0 elements = %v", got)
	}
}

// TestFakeLaunchArguments: every kernel method launches the right kernel
// with the view addresses (offsets included), sizes and scalars in the
// order kernels.cu declares them, and a grid that covers the work.
func TestFakeLaunchArguments(t *testing.T) {
	be, f := newFakeBackend(t)
	buf := func(n int) compute.View { return compute.V(be.Alloc(n + 3)).At(3) }
	addr := func(v compute.View) uint64 { return v.Buf.(*buffer).ptr + uint64(v.Off)*4 }
	x, y, z := buf(4096), buf(4096), buf(4096)
	ww, gg := buf(16), buf(16)
	step, bc2s := adamScalars(compute.AdamParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 3})
	cases := []struct {
		call func()
		name string
		grid uint32
		args []uint64
	}{
		{func() { be.Scale(x, 1000, 2) }, kScale, 4, []uint64{addr(x), 1000, f32(2)}},
		{func() { be.Axpy(y, x, 257, -1) }, kAxpy, 2, []uint64{addr(y), addr(x), 257, f32(-1)}},
		{func() { be.AddScaled(z, x, y, 10, 0.5) }, kAddScaled, 1, []uint64{addr(z), addr(x), addr(y), 10, f32(0.5)}},
		{func() { be.ReLU(z, x, 10) }, kReLU, 1, []uint64{addr(z), addr(x), 10}},
		{func() { be.ReLUBackward(z, x, y, 10) }, kReLUBackward, 1, []uint64{addr(z), addr(x), addr(y), 10}},
		{func() { be.AddBias(x, ww, 2, 3, 5) }, kAddBias, 1, []uint64{addr(x), addr(ww), 2, 3, 5}},
		{func() { be.BiasGrad(ww, x, 2, 3, 5) }, kBiasGrad, 3, []uint64{addr(ww), addr(x), 2, 3, 5}},
		{func() { be.GatedTanhSigmoid(z, x, 2, 300) }, kGated, 3, []uint64{addr(z), addr(x), 2, 300}},
		{func() { be.GatedTanhSigmoidBackward(z, y, x, 2, 300) }, kGatedBackward, 3, []uint64{addr(z), addr(y), addr(x), 2, 300}},
		{func() { be.Stretch(z, x, 3, 10, 4) }, kStretch, 1, []uint64{addr(z), addr(x), 3, 10, 4}},
		{func() { be.StretchBackward(z, x, 3, 10, 4) }, kStretchBackward, 1, []uint64{addr(z), addr(x), 3, 10, 4}},
		{func() { be.RowConvSame(z, x, ww, 4, 100, 9) }, kRowConv, 2, []uint64{addr(z), addr(x), addr(ww), 4, 100, 9}},
		{func() { be.WeightNorm(z, gg, x, 3, 7, 5) }, kWeightNorm, 7, []uint64{addr(z), addr(gg), addr(x), 3, 7, 5}},
		{func() { be.WeightNormBackward(gg, y, z, ww, x, 3, 7, 5) }, kWeightNormBwd, 7, []uint64{addr(gg), addr(y), addr(z), addr(ww), addr(x), 3, 7, 5}},
		{func() {
			be.Adam(x, y, z, buf(100), 100, compute.AdamParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 3})
		}, kAdam, 1, nil},
		{func() { be.EMA(x, y, 100, 0.999) }, kEMA, 1, []uint64{addr(x), addr(y), 100, f32(0.999)}},
	}
	for _, tc := range cases {
		f.launches = nil
		tc.call()
		if len(f.launches) != 1 {
			t.Errorf("%s: %d launches, want 1", tc.name, len(f.launches))
			continue
		}
		l := f.launches[0]
		if l.name != tc.name || l.grid != tc.grid || l.block != reductionBlock {
			t.Errorf("launched %s grid %d block %d, want %s grid %d block %d", l.name, l.grid, l.block, tc.name, tc.grid, reductionBlock)
		}
		if tc.args != nil && !slices.Equal(l.args, tc.args) {
			t.Errorf("%s args %v, want %v", tc.name, l.args, tc.args)
		}
		if tc.name == kAdam {
			want := []uint64{f32(0.9), f32(0.999), f32(1e-8), f32(step), f32(bc2s)}
			if !slices.Equal(l.args[5:], want) {
				t.Errorf("Adam scalars %v, want beta1, beta2, eps, step, bc2s = %v", l.args[5:], want)
			}
		}
	}

	f.launches = nil
	be.RowConvSameBackward(z, ww, y, x, gg, 4, 100, 9)
	// 4 rows: one share per row, so 9 taps x 4 blocks, then the finish.
	if len(f.launches) != 3 || f.launches[0].name != kRowConvBwdSrc || f.launches[1].name != kRowConvBwdW || f.launches[1].grid != 36 ||
		f.launches[2].name != kRowConvWFinish {
		t.Errorf("RowConvSameBackward launches %+v, want src kernel, 9 taps x 4 row shares, finish", f.launches)
	} else if !slices.Equal(f.launches[1].args, []uint64{be.partialDev, addr(y), addr(x), 4, 100, 9, 4}) ||
		!slices.Equal(f.launches[2].args, []uint64{addr(ww), be.partialDev, 9, 4}) {
		t.Errorf("RowConvSameBackward dw args %v, finish args %v", f.launches[1].args, f.launches[2].args)
	}

	// Zero-size calls launch nothing (a grid of 0 blocks is a CUDA error).
	f.launches = nil
	be.Scale(x, 0, 2)
	be.BiasGrad(ww, x, 0, 3, 5)
	be.WeightNorm(z, gg, x, 0, 7, 5)
	be.Stretch(z, x, 3, 0, 4)
	if len(f.launches) != 0 {
		t.Errorf("zero-size calls launched %d kernels", len(f.launches))
	}
}

// TestAdamScalars: the folded bias corrections, by hand: step 1 with
// beta1 0.9 gives lr/0.1; beta2 0.999 gives sqrt(0.001).
func TestAdamScalars(t *testing.T) {
	step, bc2s := adamScalars(compute.AdamParams{LR: 0.1, Beta1: 0.9, Beta2: 0.999, Step: 1})
	if math.Abs(float64(step)-1) > 1e-6 || math.Abs(float64(bc2s)-math.Sqrt(0.001)) > 1e-6 {
		t.Errorf("step 1: %v, %v; want 1, %v", step, bc2s, math.Sqrt(0.001))
	}
	step, bc2s = adamScalars(compute.AdamParams{LR: 0.1, Beta1: 0.9, Beta2: 0.999, Step: 2})
	if math.Abs(float64(step)-0.1/0.19) > 1e-6 || math.Abs(float64(bc2s)-math.Sqrt(1-0.999*0.999)) > 1e-6 {
		t.Errorf("step 2: %v, %v", step, bc2s)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "1-based") {
			t.Errorf("Step 0: panic %v, want one saying Step is 1-based", r)
		}
	}()
	adamScalars(compute.AdamParams{LR: 0.1, Beta1: 0.9, Beta2: 0.999})
}

// TestFakeBounds: views past their buffer, of another backend, and calls
// after Close panic with clear messages before anything reaches the driver.
func TestFakeBounds(t *testing.T) {
	be, f := newFakeBackend(t)
	other, _ := newFakeBackend(t)
	a := compute.V(be.Alloc(10))
	expect := func(what, sub string, fn func()) {
		t.Helper()
		defer func() {
			t.Helper()
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), sub) {
				t.Errorf("%s: panic %v, want one mentioning %q", what, r, sub)
			}
		}()
		fn()
	}
	f.launches = nil
	expect("Scale past end", "outside buffer", func() { be.Scale(a.At(5), 6, 2) })
	expect("Gemm C too small", "outside buffer", func() { be.Gemm(false, false, 3, 3, 2, 1, a, 2, a, 3, 0, a, 4) })
	expect("foreign buffer", "does not belong", func() { be.Scale(compute.V(other.Alloc(4)), 4, 1) })
	expect("even conv width", "odd width", func() { be.RowConvSame(a, a, a, 1, 2, 4) })
	expect("overlapping batched C", "strideC", func() {
		be.GemmStridedBatched(false, false, 2, 2, 2, 1, a, 2, 0, a, 2, 0, 0, a, 2, 2, 2)
	})
	if len(f.launches) != 0 {
		t.Errorf("%d kernels launched by calls that should have panicked first", len(f.launches))
	}
	if err := be.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := be.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	expect("use after Close", "after Close", func() { be.Fill(a, 1, 0) })
}

// TestFakeDriverErrorPanics: a failing driver call inside a kernel method
// panics with the call's and the error's names.
func TestFakeDriverErrorPanics(t *testing.T) {
	be, _ := newFakeBackend(t)
	a := compute.V(be.Alloc(4))
	be.drv.cuMemsetD32Async = func(uint64, uint32, uint64, uintptr) cuResult { return 700 }
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), "cuMemsetD32Async") || !strings.Contains(fmt.Sprint(r), "CUDA_ERROR_FAKE_700") {
			t.Errorf("panic %v, want cuMemsetD32Async and CUDA_ERROR_FAKE_700", r)
		}
	}()
	be.Fill(a, 4, 1)
}

// TestKernelSignatures: kernelSigs (what the Go side packs) matches the
// parameter lists in kernels.cu.
func TestKernelSignatures(t *testing.T) {
	re := regexp.MustCompile(`__global__\s+void\s+(\w+)\s*\(([^)]*)\)`)
	seen := 0
	for _, m := range re.FindAllStringSubmatch(kernelSource, -1) {
		var sig strings.Builder
		for _, p := range strings.Split(m[2], ",") {
			p = strings.TrimSpace(p)
			switch {
			case strings.Contains(p, "*"):
				sig.WriteByte('p')
			case strings.HasPrefix(p, "ll "):
				sig.WriteByte('l')
			case strings.HasPrefix(p, "float "):
				sig.WriteByte('f')
			default:
				t.Errorf("%s: parameter %q of a type the launcher does not pack", m[1], p)
			}
		}
		seen++
		if got := sig.String(); kernelSigs[m[1]] != got {
			t.Errorf("%s: kernels.cu takes %q, kernelSigs says %q", m[1], got, kernelSigs[m[1]])
		}
	}
	if seen != len(kernelSigs) {
		t.Errorf("kernels.cu defines %d kernels, kernelSigs lists %d", seen, len(kernelSigs))
	}
}

// fakeDevice adds the device-query, context, stream, module and cuBLAS
// handle entry points to a fake backend's APIs, describing a GPU of compute
// capability cc, so init (and with it NVRTC, the PTX cache and
// cuModuleGetFunction) runs for real without a GPU. The fake module loader
// rejects text that is not PTX and serves the .entry names it finds.
func fakeDevice(t *testing.T, be *Backend, cc int) (loads *[]string) {
	d, bl := be.drv, be.blas
	ok := cuSuccess
	loads = new([]string)
	d.cuDeviceGet = func(dev *int32, ordinal int32) cuResult { *dev = ordinal; return ok }
	d.cuDriverGetVersion = func(v *int32) cuResult { *v = 12040; return ok }
	d.cuDeviceGetName = func(name *byte, n int32, _ int32) cuResult {
		copy(unsafe.Slice(name, n), "FakeGPU 9000\x00")
		return ok
	}
	d.cuDeviceGetAttribute = func(v *int32, attr int32, _ int32) cuResult {
		switch attr {
		case attrComputeCapMajor:
			*v = int32(cc / 10)
		case attrComputeCapMinor:
			*v = int32(cc % 10)
		case attrMultiprocessors:
			*v = 132
		default:
			return 1 // CUDA_ERROR_INVALID_VALUE
		}
		return ok
	}
	d.cuDeviceTotalMem = func(b *uint64, _ int32) cuResult { *b = 80 << 30; return ok }
	d.cuDevicePrimaryCtxRetain = func(ctx *uintptr, _ int32) cuResult { *ctx = 1; return ok }
	d.cuStreamCreate = func(s *uintptr, flags uint32) cuResult {
		if flags != cuStreamNonBlocking {
			t.Errorf("cuStreamCreate flags %d", flags)
		}
		*s = 2
		return ok
	}
	entries := map[string]uintptr{}
	d.cuModuleLoadData = func(m *uintptr, image unsafe.Pointer) cuResult {
		ptx := goString(image)
		*loads = append(*loads, ptx)
		if !strings.Contains(ptx, ".version") || !strings.Contains(ptx, ".entry") {
			return 218 // CUDA_ERROR_INVALID_PTX
		}
		for i, m := range regexp.MustCompile(`\.entry\s+(\w+)\(`).FindAllStringSubmatch(ptx, -1) {
			entries[m[1]] = uintptr(0x1000 + i)
		}
		*m = 5
		return ok
	}
	d.cuModuleGetFunction = func(f *uintptr, _ uintptr, name string) cuResult {
		id, found := entries[name]
		if !found {
			return 500 // CUDA_ERROR_NOT_FOUND
		}
		*f = id
		return ok
	}
	bl.cublasCreate = func(h *uintptr) cublasStatus { *h = 3; return 0 }
	bl.cublasSetStream = func(h, s uintptr) cublasStatus {
		if h != 3 || s != 2 {
			t.Errorf("cublasSetStream(%d, %d): want the handle on the backend's stream", h, s)
		}
		return 0
	}
	bl.cublasSetMathMode = func(_ uintptr, mode int32) cublasStatus {
		want := int32(cublasDefaultMath)
		if be.tf32 {
			want = cublasTF32TensorMath
		}
		if mode != want {
			t.Errorf("cublasSetMathMode(%d), want %d (TF32 %v)", mode, want, be.tf32)
		}
		return 0
	}
	bl.cublasGetVersion = func(_ uintptr, v *int32) cublasStatus { *v = 120400; return 0 }
	return loads
}

// newFakeInit builds a fake backend and runs the real init on it.
func newFakeInit(t *testing.T, cc int, tf32 bool) (*Backend, *[]string, error) {
	be, f := newFakeBackend(t)
	if err := be.release(); err != nil { // drop the buffers newFakeBackend made
		t.Fatal(err)
	}
	be.nv = nvrtcOrSkip(t)
	be.tf32 = tf32
	loads := fakeDevice(t, be, cc)
	be.funcs = map[string]uintptr{}
	err := be.init(0)
	for name, id := range be.funcs {
		f.names[id] = name
	}
	return be, loads, err
}

// TestFakeInit: init on a fake sm_90 device compiles the kernels with NVRTC,
// loads them, finds every kernel, caches the PTX on disk, and a second init
// uses the cache; a damaged cache entry is recompiled; a GPU newer than
// NVRTC knows gets the newest PTX NVRTC can emit.
func TestFakeInit(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	be, loads, err := newFakeInit(t, 90, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(be.funcs) != len(kernelNames) {
		t.Errorf("%d kernels found, want %d", len(be.funcs), len(kernelNames))
	}
	desc := be.Describe()
	for _, want := range []string{"FakeGPU 9000", "sm_90", "132 SMs", "80.0 GiB", "driver 12.4", "fp32", "compute_90"} {
		if !strings.Contains(desc, want) {
			t.Errorf("Describe %q lacks %q", desc, want)
		}
	}
	dir, _ := ptxCacheDir()
	path := filepath.Join(dir, ptxCacheKey(kernelSource, "compute_90", be.nv.version(), 12040))
	cached, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("PTX not cached: %v", err)
	}
	if string(nulTerminated(cached)) != (*loads)[0]+"\x00" {
		t.Errorf("cached PTX differs from the loaded one")
	}

	// A marked cache entry is what the second init loads.
	marked := strings.Replace(strings.TrimRight(string(cached), "\x00"), "\n", "\n// from-cache\n", 1)
	if err := os.WriteFile(path, []byte(marked), 0o644); err != nil {
		t.Fatal(err)
	}
	_, loads, err = newFakeInit(t, 90, true)
	if err != nil || len(*loads) != 1 || !strings.Contains((*loads)[0], "// from-cache") {
		t.Fatalf("second init: err %v, %d module loads; want one load of the cached PTX", err, len(*loads))
	}

	// A damaged entry fails to load and is compiled afresh.
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, loads, err = newFakeInit(t, 90, false)
	if err != nil || len(*loads) != 2 || (*loads)[0] != "garbage" || !strings.Contains((*loads)[1], ".entry") {
		t.Fatalf("damaged cache: err %v, %d loads; want garbage, then fresh PTX", err, len(*loads))
	}

	// sm_120 on an NVRTC that stops earlier: the newest PTX it can emit.
	be, _, err = newFakeInit(t, 120, false)
	if err != nil {
		t.Fatal(err)
	}
	// The newest arch NVRTC supports at or below the device's (NVRTC 13
	// knows sm_120 itself; 11.8 stops at 90).
	if archs := be.nv.supportedArchs(); archs != nil {
		want := slices.Max(slices.DeleteFunc(slices.Clone(archs), func(a int) bool { return a > 120 }))
		if be.arch != fmt.Sprintf("compute_%d", want) {
			t.Errorf("sm_120 with NVRTC archs %v: compiled for %s, want compute_%d", archs, be.arch, want)
		}
	}
}

// TestFakeInitPTXTooNew: a driver refusing the PTX version gets an error
// that says to update the driver.
func TestFakeInitPTXTooNew(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	be, _ := newFakeBackend(t)
	be.release()
	be.nv = nvrtcOrSkip(t)
	fakeDevice(t, be, 80)
	be.drv.cuModuleLoadData = func(*uintptr, unsafe.Pointer) cuResult { return cuErrUnsupPTX }
	be.funcs = map[string]uintptr{}
	err := be.init(0)
	if err == nil || !strings.Contains(err.Error(), "update the NVIDIA driver") || !strings.Contains(err.Error(), "CUDA_ERROR_FAKE_222") {
		t.Fatalf("err = %v, want CUDA_ERROR_FAKE_222 and advice to update the driver", err)
	}
}
