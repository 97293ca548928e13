#!/usr/bin/env bash
# gpu-check.sh: build here, run on a GPU machine, one summary table.
#
# Usage:
#   scripts/gpu-check.sh          # on a machine with Go: build gpu-bin/cuda.test
#                                 # (CGO_ENABLED=0, linux/amd64: the test and
#                                 # benchmark binary of compute/cuda; no cgo, links
#                                 # only glibc, needs no CUDA at build time)
#   scripts/gpu-check.sh --run    # on the GPU machine (no Go needed; the NVIDIA
#                                 # driver, cuBLAS and NVRTC of CUDA 11+ needed,
#                                 # PyTorch optional): runs every compute/cuda test
#                                 # (kernel conformance vs float64 references, CUDA vs
#                                 # CPU backend to 1e-4, TF32, NVRTC compiles) and the
#                                 # GEMM/kernel benchmarks, then prints one table.
#                                 # Under 5 minutes (timeouts 150 + 90 + 45 s); exit 1 if a test failed.
#
# With the device tool: run `scripts/gpu-check.sh` here, then run
# `scripts/gpu-check.sh --run` there with carry ["gpu-bin"] (gpu-bin/ is
# git-ignored). Logs go to $OUT when set (the device tool brings it back),
# else to gpu-bin/. Libraries are searched as compute/cuda documents
# ($WAVECAT_CUDA_LIBS, $CUDA_HOME, LD_LIBRARY_PATH, /usr/local/cuda*, pip wheels).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=gpu-bin/cuda.test

if [[ "${1:-}" != "--run" ]]; then
	set -e
	mkdir -p gpu-bin
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go test -c -o "$BIN" ./compute/cuda
	ls -l "$BIN"
	echo "built $BIN; on the GPU machine run: scripts/gpu-check.sh --run  (carry gpu-bin)"
	exit 0
fi

if [[ ! -x "$BIN" ]]; then
	echo "gpu-check: $BIN missing: run scripts/gpu-check.sh (without --run) on a machine with Go first, and carry gpu-bin/" >&2
	exit 2
fi
LOGS="${OUT:-gpu-bin}"
mkdir -p "$LOGS"
TESTLOG="$LOGS/cuda-tests.log"
BENCHLOG="$LOGS/cuda-bench.log"
TORCHLOG="$LOGS/torch-gemm.log"

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "(nvidia-smi not available)"

echo "== tests (log: $TESTLOG)"
timeout 150 "$BIN" -test.v -test.count=1 -test.timeout=140s >"$TESTLOG" 2>&1
TEST_RC=$?
echo "test binary exit status $TEST_RC"

echo "== benchmarks (log: $BENCHLOG)"
timeout 90 "$BIN" -test.run '^$' -test.bench . -test.benchtime 1s -test.timeout=85s >"$BENCHLOG" 2>&1
BENCH_RC=$?

echo "== PyTorch reference GEMM (log: $TORCHLOG)"
timeout 45 python3 - >"$TORCHLOG" 2>&1 <<'PY'
import time
import torch
if not torch.cuda.is_available():
    raise SystemExit("torch: no CUDA")
def gflops(n, tf32):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a = torch.full((n, n), 0.01, device="cuda")
    b = torch.full((n, n), 0.01, device="cuda")
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        a @ b
        reps += 1
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9
for n in (1024, 4096):
    print(f"torch-fp32/n={n} {gflops(n, False):.0f} GFLOP/s")
    print(f"torch-tf32/n={n} {gflops(n, True):.0f} GFLOP/s")
print("torch", torch.__version__, "cuda", torch.version.cuda)
PY

echo
echo "================ compute/cuda GPU check summary ================"
grep -m1 -E "cuda: .*sm_[0-9]+" "$TESTLOG" | sed 's/^ *gpu_test.go:[0-9]*: /backend: /'
printf '%-58s %s\n' "TEST" "RESULT"
# Top-level tests, and the subtests of the conformance and CPU comparisons.
grep -E -- '^ *--- (PASS|FAIL|SKIP): ' "$TESTLOG" |
	sed -E 's/^ *--- (PASS|FAIL|SKIP): ([^ ]+).*/\2 \1/' |
	awk '$1 !~ /\// || $1 ~ /^(TestConformance|TestMatchesCPU)\// { printf "%-58s %s\n", $1, $2 }'
grep -m1 -o 'GPU test skipped: .*' "$TESTLOG" | sed 's/^/NOTE: GPU tests did not run: /'
if grep -q -E '^(panic:|FAIL|--- FAIL)' "$TESTLOG"; then
	echo "FAILURES: see $TESTLOG; first lines:"
	grep -m 20 -E -A3 -- '--- FAIL|^panic:' "$TESTLOG"
fi
echo
printf '%-58s %s\n' "BENCHMARK" "RESULT"
grep -E '^Benchmark' "$BENCHLOG" |
	awk '{ m=""; for (i = 3; i < NF; i++) if ($(i+1) ~ /GFLOP\/s|GB\/s|us\/launch/) m = m $i " " $(i+1) " "; if (m == "") m = $3 " " $4; printf "%-58s %s\n", $1, m }'
grep -E 'GFLOP/s|^torch ' "$TORCHLOG" 2>/dev/null | awk '{ printf "%-58s %s\n", $1, $2 " " $3 }'
[[ $BENCH_RC -eq 0 ]] || echo "benchmark binary exit status $BENCH_RC (see $BENCHLOG)"
echo "================================================================"
if [[ $TEST_RC -ne 0 ]]; then
	exit 1
fi
