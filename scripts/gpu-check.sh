#!/usr/bin/env bash
# gpu-check.sh: build here, run on a GPU machine, one summary table.
#
# Usage:
#   scripts/gpu-check.sh          # on a machine with Go: build gpu-bin/ (static,
#                                 # CGO_ENABLED=0 linux/amd64 test binaries of
#                                 # compute/cuda, outputs, wavenet and bench, the
#                                 # train-wavenet and vocode commands, and a small
#                                 # preprocessed dump for a training run)
#   scripts/gpu-check.sh --run    # on the GPU machine (no Go needed; the NVIDIA
#                                 # driver, cuBLAS and NVRTC of CUDA 11+; PyTorch
#                                 # with CUDA for the anchors, optional):
#       1. conformance: every compute/cuda test (kernels vs float64 references,
#          CUDA vs CPU to 1e-4, run-time modules and graphs), the output heads
#          on the GPU vs the CPU heads (loss, gradient, bits, sampling), the GPU
#          generator vs the CPU Forward (teacher-forced and free-running);
#       2. benchmarks: the reference training step at 8 x 10240 (fp32, TF32,
#          batch 1, and a per-kernel profile) and PyTorch eager's on the same
#          GPU; GPU synthesis at batch 1, 4 and 32 (samples/s, x real time),
#          each with the cluster step (wcl_step, sm_90 thread-block clusters),
#          the one-launch step (wf_step) and the layered kernels;
#       3. a 300-step training run of the tiny AdaCat model on cuda (dev bits
#          by step, to compare with the same run on cpu), vocode --device cuda
#          with the built-in model, and the heads' GPU tests.
#   scripts/gpu-check.sh --run --quick   # about 2 minutes: the cuda and
#                                 # generator tests, the training-step benchmarks
#                                 # and PyTorch's, and synthesis with the MoL head.
#     About 4 minutes (every step has a timeout), most important first; the
#     summary goes to stdout and $OUT/summary.txt as it is made, all logs to
#     $OUT/logs.tgz; exit 1 if a check failed.
#
# With the device tool: run `scripts/gpu-check.sh` here, then run
# `scripts/gpu-check.sh --run` there with carry ["gpu-bin"] (git-ignored).
# Results go to $OUT when set (the device tool brings it back), else gpu-bin/out.
set -uo pipefail
cd "$(dirname "$0")/.."
B=gpu-bin

BINS="cuda.test outputs.test wavenet.test train.test bench.test train-wavenet vocode"

if [[ "${1:-}" != "--run" ]]; then
	set -e
	mkdir -p "$B"
	E=$(mktemp -d)
	trap 'rm -rf "$E"' EXIT
	export CGO_ENABLED=0 GOOS=linux GOARCH=amd64
	for p in compute/cuda outputs wavenet train bench; do
		go test -c -ldflags="-s -w" -o "$E/$(basename "$p").test" "./$p"
	done
	go build -ldflags="-s -w" -o "$E/train-wavenet" ./cmd/train-wavenet
	go build -ldflags="-s -w" -o "$E/vocode" ./cmd/vocode
	if ! ls "$B"/dump/*-done.json >/dev/null 2>&1; then
		rm -rf "$B/dump"
		# The committed mini corpus (LJSpeech layout), preprocessed here.
		"$E/train-wavenet" preprocess --data testdata/minicorpus/LJSpeech-1.1 --out "$B/dump" >/dev/null
	fi
	"$E/vocode" mel -q demo/samples/demo1.wav -o "$B/mel-example.npy"
	cp bench/pytorch/*.py "$B/"
	# Compressed: the device tool carries at most 64 MiB.
	for f in $BINS; do gzip -9 -c "$E/$f" >"$B/$f.gz"; done
	du -sh "$B"
	echo "built $B; on the GPU machine run: scripts/gpu-check.sh --run  (carry $B)"
	exit 0
fi

E=$(mktemp -d)
for f in $BINS; do
	if [[ ! -f "$B/$f.gz" ]]; then
		echo "gpu-check: $B/$f.gz missing: run scripts/gpu-check.sh (without --run) on a machine with Go first, and carry $B/" >&2
		exit 2
	fi
	gunzip -c "$B/$f.gz" >"$E/$f" && chmod +x "$E/$f"
done
QUICK=0
[[ "${2:-}" == "--quick" ]] && QUICK=1
O="${OUT:-$B/out}"
mkdir -p "$O"
L=$(mktemp -d) # logs, packed into $O/logs.tgz at the end (the device tool returns few files)
W=$(mktemp -d)
S="$O/summary.txt" # written as results arrive, so a cut-short run still reports
: >"$S"
PY=python3
command -v "$PY" >/dev/null || PY=/usr/bin/python3
FAILED=0
say() { echo "$*" | tee -a "$S"; }
row() { say "$(printf '%-62s %s' "$1" "$2")"; }

# tests NAME BINARY TIMEOUT [args]: run a test binary, one row per
# top-level test, the first failure lines.
tests() {
	local name=$1 bin=$2 to=$3
	shift 3
	local log="$L/$name.log"
	timeout "$to" "$E/$bin" -test.v -test.count=1 -test.timeout="$((to - 5))s" "$@" >"$log" 2>&1
	local rc=$?
	[[ $rc -ne 0 ]] && FAILED=1
	while read -r res tname; do
		row "$name: $tname" "$res"
	done < <(grep -E -- '^--- (PASS|FAIL|SKIP): ' "$log" | sed -E 's/^--- (PASS|FAIL|SKIP): ([^ ]+).*/\1 \2/')
	if [[ $rc -ne 0 ]]; then
		row "$name" "exit $rc"
		grep -m 16 -E -A4 -- '--- FAIL|^panic:|^FAIL' "$log" | cut -c1-240 | tee -a "$S"
	fi
}

bench() { # bench LOG: one row per benchmark with its custom metrics
	grep -h -E '^Benchmark' "$1" 2>/dev/null |
		awk '{ m=""; for (i = 3; i < NF; i++) if ($(i+1) ~ /samples\/s|GFLOP\/s|xRT|us\/step/) m = m $i " " $(i+1) " "; printf "%-62s %s %s\n", $1, $3 " " $4, m }' | tee -a "$S"
}

say "== wavecat GPU check: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not available')"
say "== 1. conformance"
tests wavenet wavenet.test 150 -test.run '^TestGPU|SourceCompiles' -test.skip '^TestGPU.*/cluster$'
# The cluster step on its own (first built 2026-12-05, never run on a GPU
# before), so a failure or hang there costs no other row.
tests wavenet-cluster wavenet.test 60 -test.run '^TestGPU.*/cluster$'
tests train train.test 40 -test.run '^TestGPU'
tests cuda cuda.test 45 -test.run '^Test(Conformance|MatchesCPU|TF32|GPU.*|CheckCompile|KernelsCompile)$'
say "$(grep -h -m1 -o -E "cuda: [^;]*NVRTC [0-9.]+ kernels for compute_[0-9]+" "$L"/cuda.log)"
if grep -q -- '--- SKIP: TestConformance' "$L/cuda.log"; then
	say "NO GPU: the CUDA backend did not open, so the GPU tests skipped: $(grep -m1 -o 'GPU test skipped: .*' "$L/cuda.log")"
	FAILED=1
fi

say "== 2. benchmarks (reference config)"
timeout 45 "$E/bench.test" -test.run '^$' -test.bench 'TrainStepCUDA$' -test.benchtime 3x -test.timeout=40s >"$L/bench-train.log" 2>&1
bench "$L/bench-train.log"
for a in "" "--tf32"; do
	timeout 40 "$PY" "$B/train_step.py" --device cuda --batch 8 --steps 3 $a >>"$L/torch-train.log" 2>&1
done
grep -E '^torch|^best' "$L/torch-train.log" | sed 's/^/pytorch: /' | tee -a "$S"
GEN=GenerateCUDA
[[ $QUICK -eq 1 ]] && GEN=GenerateCUDA/mol
# Verbose, so a skipped row (the one-launch step unavailable) says why.
timeout 120 "$E/wavenet.test" -test.run '^$' -test.bench "$GEN" -test.skip 'GenerateCUDA//cluster' -test.benchtime 1x -test.v -test.timeout=115s >"$L/bench-generate.log" 2>&1
# The cluster step's rows in a run of their own (as its tests above).
CL="$GEN//cluster"
[[ $QUICK -eq 1 ]] && CL="$GEN/cluster"
timeout 90 "$E/wavenet.test" -test.run '^$' -test.bench "$CL" -test.benchtime 1x -test.v -test.timeout=85s >>"$L/bench-generate.log" 2>&1
grep -m1 -o 'one-launch step: .*' "$L/bench-generate.log" | tee -a "$S"
grep -o 'cluster step: .*' "$L/bench-generate.log" | sort -u | tee -a "$S"
bench "$L/bench-generate.log"
grep -A1 -E -- '--- SKIP: Benchmark' "$L/bench-generate.log" | grep -v -- '^--$' | sed -E 's/^ +//' | cut -c1-200 | tee -a "$S"
if [[ $QUICK -eq 1 ]]; then
	tar -C "$L" -czf "$O/logs.tgz" .
	rm -rf "$W" "$L" "$E"
	say "== done (quick): $([[ $FAILED -eq 0 ]] && echo 'all checks passed' || echo 'FAILURES above')"
	exit $FAILED
fi
timeout 25 "$E/bench.test" -test.run '^$' -test.bench 'TrainStepCUDAProfile' -test.benchtime 1x -test.v -test.timeout=20s >"$L/bench-profile.log" 2>&1
say "-- training-step profile (fp32, 8 x 10240, synced per call):"
grep -E 'profile over|^ +[a-zA-Z].*ms/step' "$L/bench-profile.log" | head -16 | tee -a "$S"

say "== 3. commands"
timeout 40 "$E/train-wavenet" --data "$B/dump" --out "$W/run-cuda" --preset tiny --head adacat --components 15 --lambda 1e-4 \
	--steps 300 --batch-size 4 --max-time-steps 4096 --clip-norm 5 --eval-interval 100 --checkpoint-interval 0 \
	--log-interval 50 --device cuda >"$L/train-cuda.log" 2>&1
rc=$?
[[ $rc -ne 0 ]] && FAILED=1
row "train-wavenet --device cuda (300 steps, tiny adacat)" "exit $rc"
cp "$W/run-cuda/metrics.jsonl" "$L/metrics-cuda.jsonl" 2>/dev/null
say "dev bits (EMA) by step: $(grep '"type":"eval"' "$L/metrics-cuda.jsonl" 2>/dev/null | sed -E 's/.*"step":([0-9]+).*"bits":([-0-9.e]+).*/ \1:\2/' | tr -d '\n')"
say "steps/s: $(grep '"type":"train"' "$L/metrics-cuda.jsonl" 2>/dev/null | tail -1 | sed -E 's/.*"steps_per_s":([0-9.]+).*/\1/')"
# Data parallelism through the launcher: one NCCL rank, gradients in small
# buckets overlapped with the backward pass.
timeout 40 "$E/train-wavenet" --data "$B/dump" --out "$W/run-gpus1" --preset tiny --head mulaw --bins 64 \
	--steps 50 --batch-size 2 --max-time-steps 4096 --eval-interval 0 --checkpoint-interval 0 --log-interval 25 \
	--device cuda --gpus 1 --grad-bucket-mib 0.05 >"$L/train-gpus1.log" 2>&1
rc=$?
[[ $rc -ne 0 ]] && FAILED=1
row "train-wavenet --device cuda --gpus 1 (NCCL, 50 steps)" "exit $rc"
[[ $rc -ne 0 ]] && tail -3 "$L/train-gpus1.log" | tee -a "$S"
timeout 30 "$E/vocode" --device cuda -o "$W/vocode-cuda.wav" "$B/mel-example.npy" >"$L/vocode-cuda.log" 2>"$L/vocode-cuda.err"
rc=$?
[[ $rc -ne 0 ]] && FAILED=1
row "vocode --device cuda (built-in model)" "exit $rc, $(stat -c %s "$W/vocode-cuda.wav" 2>/dev/null || echo 0) bytes"
tail -1 "$L/vocode-cuda.log" | tee -a "$S"
[[ $rc -ne 0 ]] && tail -3 "$L/vocode-cuda.err" | tee -a "$S"
tests outputs outputs.test 40 -test.run 'Device|Compile'

tar -C "$L" -czf "$O/logs.tgz" .
rm -rf "$W" "$L" "$E"
say "== done: $([[ $FAILED -eq 0 ]] && echo 'all checks passed' || echo 'FAILURES above')"
exit $FAILED
