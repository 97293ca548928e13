package cuda

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebitengine/purego"

	"github.com/wavecat/wavecat/compute"
)

// fakeNCCLSource is a stand-in libnccl.so.2 written against nccl.h's
// declarations (types, enum values and prototypes as NCCL 2.23+ publishes
// them), so the Go bindings are called through the C ABI they will meet on
// a GPU machine: every argument's position, width and stack placement (the
// seventh argument of ncclAllReduce goes on the stack) must arrive as C
// declares it. Its "reduction" treats the job as two ranks holding the same
// values (the sum doubles them, in the buffer's own type), so the test sees
// that pointers, counts and data types arrived; every call is logged.
const fakeNCCLSource = `
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef enum { ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2,
               ncclInternalError = 3, ncclInvalidArgument = 4, ncclInvalidUsage = 5,
               ncclRemoteError = 6, ncclInProgress = 7 } ncclResult_t;
typedef enum { ncclInt8 = 0, ncclUint8 = 1, ncclInt32 = 2, ncclUint32 = 3, ncclInt64 = 4,
               ncclUint64 = 5, ncclFloat16 = 6, ncclFloat32 = 7, ncclFloat64 = 8 } ncclDataType_t;
typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 } ncclRedOp_t;
typedef struct ncclComm *ncclComm_t;
typedef struct CUstream_st *cudaStream_t;
#define NCCL_UNIQUE_ID_BYTES 128
typedef struct { char internal[NCCL_UNIQUE_ID_BYTES]; } ncclUniqueId;
typedef struct ncclConfig_v21700 ncclConfig_t;

#define FAKE_COMM ((ncclComm_t)0xc0ffee)

static char wc_log[8192];
static ncclResult_t wc_async = ncclSuccess;

static void logf_(const char *fmt, ...) {
    size_t n = strlen(wc_log);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(wc_log + n, sizeof wc_log - n, fmt, ap);
    va_end(ap);
    n = strlen(wc_log);
    if (n + 1 < sizeof wc_log) { wc_log[n] = '\n'; wc_log[n + 1] = 0; }
}

const char *wc_fake_log(void) { return wc_log; }
void wc_fake_set_async(int r) { wc_async = (ncclResult_t)r; }

ncclResult_t ncclGetVersion(int *version) { *version = 22703; return ncclSuccess; }

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    for (int i = 0; i < NCCL_UNIQUE_ID_BYTES; i++) id->internal[i] = (char)(7 * i + 3);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRankScalable(ncclComm_t *newcomm, int nranks, int myrank, int nId,
                                      ncclUniqueId *commIds, ncclConfig_t *config) {
    int same = 1;
    for (int i = 0; i < NCCL_UNIQUE_ID_BYTES; i++) same &= commIds->internal[i] == (char)(7 * i + 3);
    logf_("init nranks=%d rank=%d nId=%d id=%s config=%s", nranks, myrank, nId,
          same ? "ncclGetUniqueId's" : "other", config ? "set" : "NULL");
    *newcomm = FAKE_COMM;
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    logf_("allreduce %s count=%zu dtype=%d op=%d comm=%s stream=%lu", sendbuff == recvbuff ? "in-place" : "out-of-place",
          count, (int)datatype, (int)op, comm == FAKE_COMM ? "ok" : "other", (unsigned long)stream);
    if (comm != FAKE_COMM || op != ncclSum) return ncclInvalidArgument;
    if (datatype == ncclFloat32) {
        const float *s = sendbuff; float *r = recvbuff;
        for (size_t i = 0; i < count; i++) r[i] = s[i] + s[i];
    } else if (datatype == ncclFloat64) {
        const double *s = sendbuff; double *r = recvbuff;
        for (size_t i = 0; i < count; i++) r[i] = s[i] + s[i];
    } else {
        return ncclInvalidArgument;
    }
    return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                           int root, ncclComm_t comm, cudaStream_t stream) {
    logf_("broadcast %s count=%zu dtype=%d root=%d comm=%s stream=%lu", sendbuff == recvbuff ? "in-place" : "out-of-place",
          count, (int)datatype, root, comm == FAKE_COMM ? "ok" : "other", (unsigned long)stream);
    return comm == FAKE_COMM ? ncclSuccess : ncclInvalidArgument;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError) {
    *asyncError = wc_async;
    return comm == FAKE_COMM ? ncclSuccess : ncclInvalidArgument;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) { logf_("abort comm=%s", comm == FAKE_COMM ? "ok" : "other"); return ncclSuccess; }
ncclResult_t ncclCommDestroy(ncclComm_t comm) { logf_("destroy comm=%s", comm == FAKE_COMM ? "ok" : "other"); return ncclSuccess; }

const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInvalidArgument: return "invalid argument";
    default: return "unknown result code";
    }
}
`

// TestNCCLBindingsCallC builds fakeNCCLSource with the C compiler, loads it
// as libnccl.so.2 the way loadNCCL does (search folder, dlopen, bind with
// NCCL's symbol list), and drives NCCLComm through it on the fake-driver
// backend: the unique id reaches ncclCommInitRankScalable intact, every
// collective gets its buffer, count, data type, operation, root and stream
// in the right places (the sums land in the right elements, float32 and
// float64 alike), and an asynchronous NCCL error while a collective is
// pending becomes an error carrying NCCL's own message, after which the
// communicator is aborted and refuses further work.
func TestNCCLBindingsCallC(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("no C compiler to build the stand-in libnccl: %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "fake_nccl.c")
	if err := os.WriteFile(src, []byte(fakeNCCLSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cc, "-std=c11", "-Wall", "-Werror", "-fPIC", "-shared", "-o", filepath.Join(dir, "libnccl.so.2"), src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	lib, err := load(libNCCL, []string{dir}, false, func(p string) (uintptr, error) {
		// RTLD_LOCAL: the stand-in must not be found by a later real load.
		return purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_LOCAL)
	})
	if err != nil {
		t.Fatal(err)
	}
	n := &ncclAPI{lib: lib}
	if err := bindNCCL(lib, n); err != nil {
		t.Fatal(err)
	}
	var fakeLog func() string
	var setAsync func(int32)
	purego.RegisterLibFunc(&fakeLog, lib.handle, "wc_fake_log")
	purego.RegisterLibFunc(&setAsync, lib.handle, "wc_fake_set_async")

	// The driver's share (streams, events) is the Go fake's, as in
	// TestNCCLOverlappedReductionsOrder.
	be, f := newFakeBackend(t)
	const side = 40
	be.drv.cuStreamCreate = func(s *uintptr, _ uint32) cuResult { *s = side; return cuSuccess }
	n.cuEventCreate = func(e *uintptr, _ uint32) cuResult { *e = 50; return cuSuccess }
	n.cuEventRecord = func(uintptr, uintptr) cuResult { return cuSuccess }
	n.cuStreamWaitEvent = func(uintptr, uintptr, uint32) cuResult { return cuSuccess }
	n.cuEventDestroy = func(uintptr) cuResult { return cuSuccess }
	query := cuResult(cuSuccess)
	n.cuStreamQuery = func(uintptr) cuResult { return query }

	// NewNCCLComm and the id come through loadNCCL: make it return the
	// stand-in (and loadDriver the fake driver) for this test only.
	loadMu.Lock()
	oldDrv, oldNCCL := driverLib, ncclLib
	driverLib, ncclLib = be.drv, n
	loadMu.Unlock()
	t.Cleanup(func() {
		loadMu.Lock()
		driverLib, ncclLib = oldDrv, oldNCCL
		loadMu.Unlock()
	})

	if v, err := NCCLVersion(); err != nil || v != 22703 {
		t.Fatalf("NCCLVersion = %d, %v; want 22703", v, err)
	}
	id, err := NCCLUniqueID()
	if err != nil || len(id) != ncclIDBytes || id[0] != 3 || id[127] != byte((7*127+3)%256) {
		t.Fatalf("NCCLUniqueID = %v, %v", id, err)
	}
	c, err := NewNCCLComm(be, id, 0, 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}

	buf := be.Alloc(16)
	v := compute.V(buf)
	x := make([]float32, 16)
	for i := range x {
		x[i] = float32(i) + 0.25
	}
	be.Upload(v, x)
	if err := c.AllReduceSum(v.At(3), 5); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAllReduceSum(v.At(10), 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	got := f.floats(devicePtr(v), 16, "buffer")
	for i, g := range got {
		want := x[i]
		if (i >= 3 && i < 8) || (i >= 10 && i < 12) {
			want = 2 * x[i]
		}
		if g != want {
			t.Errorf("element %d after the sums = %g, want %g", i, g, want)
		}
	}
	h := []float64{1.5, -2.25, 1e300, 3}
	if err := c.AllReduceHost(h[:3]); err != nil {
		t.Fatal(err)
	}
	if h[0] != 3 || h[1] != -4.5 || h[2] != 2e300 || h[3] != 3 {
		t.Errorf("AllReduceHost gave %v, want [3 -4.5 2e300 3]", h)
	}
	if err := c.Broadcast(v.At(2), 4, 0); err != nil {
		t.Fatal(err)
	}

	// A peer dies while a sum is pending: NCCL reports it asynchronously.
	query = cuErrNotReady
	setAsync(6)
	err = c.AllReduceSum(v, 1)
	if err == nil || !strings.Contains(err.Error(), "remote process exited or there was a network error") || !strings.Contains(err.Error(), "rank 0 of 1") {
		t.Fatalf("AllReduceSum with a dead peer: %v", err)
	}
	if err := c.Broadcast(v, 1, 0); err == nil || !strings.Contains(err.Error(), "aborted or closed communicator") {
		t.Errorf("Broadcast after the abort: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	be.Free(buf)

	want := strings.Join([]string{
		"init nranks=1 rank=0 nId=1 id=ncclGetUniqueId's config=NULL",
		"allreduce in-place count=5 dtype=7 op=0 comm=ok stream=2",
		"allreduce in-place count=2 dtype=7 op=0 comm=ok stream=40",
		"allreduce in-place count=3 dtype=8 op=0 comm=ok stream=2",
		"broadcast in-place count=4 dtype=7 root=0 comm=ok stream=2",
		"allreduce in-place count=1 dtype=7 op=0 comm=ok stream=2",
		"abort comm=ok",
	}, "\n") + "\n"
	if log := fakeLog(); log != want {
		t.Errorf("calls seen by the C library:\n%s\nwant:\n%s", log, want)
	}
}
