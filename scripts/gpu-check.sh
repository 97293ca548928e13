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
#          GPU; GPU synthesis at batch 1 and 32 (samples/s, x real time);
#       3. a 300-step training run of the tiny AdaCat model on cuda and on cpu
#          (dev bits side by side), and vocode --device cuda with the built-in
#          model.
#     Under 5 minutes (every step has a timeout); exit 1 if a test failed.
#
# With the device tool: run `scripts/gpu-check.sh` here, then run
# `scripts/gpu-check.sh --run` there with carry ["gpu-bin"] (git-ignored).
# Logs go to $OUT when set (the device tool brings it back), else gpu-bin/out.
set -uo pipefail
cd "$(dirname "$0")/.."
B=gpu-bin

if [[ "${1:-}" != "--run" ]]; then
	set -e
	mkdir -p "$B"
	export CGO_ENABLED=0 GOOS=linux GOARCH=amd64
	for p in compute/cuda outputs wavenet bench; do
		go test -c -ldflags="-s -w" -o "$B/$(basename "$p").test" "./$p"
	done
	go build -ldflags="-s -w" -o "$B/train-wavenet" ./cmd/train-wavenet
	go build -ldflags="-s -w" -o "$B/vocode" ./cmd/vocode
	if ! ls "$B"/dump/*-done.json >/dev/null 2>&1; then
		rm -rf "$B/dump"
		# The committed mini corpus (LJSpeech layout), preprocessed here.
		"$B/train-wavenet" preprocess --data testdata/minicorpus/LJSpeech-1.1 --out "$B/dump" >/dev/null
	fi
	"$B/vocode" mel -q demo/samples/demo1.wav -o "$B/mel-example.npy"
	cp bench/pytorch/*.py "$B/" 2>/dev/null || true
	du -sh "$B"
	echo "built $B; on the GPU machine run: scripts/gpu-check.sh --run  (carry $B)"
	exit 0
fi

for f in cuda.test outputs.test wavenet.test bench.test train-wavenet vocode; do
	if [[ ! -x "$B/$f" ]]; then
		echo "gpu-check: $B/$f missing: run scripts/gpu-check.sh (without --run) on a machine with Go first, and carry $B/" >&2
		exit 2
	fi
done
O="${OUT:-$B/out}"
mkdir -p "$O"
W=$(mktemp -d)
PY=python3
command -v "$PY" >/dev/null || PY=/usr/bin/python3
FAILED=0
declare -a ROWS

row() { ROWS+=("$(printf '%-62s %s' "$1" "$2")"); }

# tests NAME BINARY TIMEOUT [args]: run a test binary, record each top-level
# test's result.
tests() {
	local name=$1 bin=$2 to=$3
	shift 3
	local log="$O/$name.log"
	timeout "$to" "$B/$bin" -test.v -test.count=1 -test.timeout="$((to - 5))s" "$@" >"$log" 2>&1
	local rc=$?
	[[ $rc -ne 0 ]] && FAILED=1
	while read -r res tname; do
		row "$name: $tname" "$res"
	done < <(grep -E -- '^--- (PASS|FAIL|SKIP): ' "$log" | sed -E 's/^--- (PASS|FAIL|SKIP): ([^ ]+).*/\1 \2/')
	grep -q -E -- '^--- FAIL|^panic:' "$log" || [[ $rc -eq 0 ]] || row "$name" "exit $rc (timeout or crash, see $name.log)"
}

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "(nvidia-smi not available)"

echo "== 1. conformance"
tests cuda cuda.test 60
tests outputs outputs.test 90 -test.run 'Device|Compile'
tests wavenet wavenet.test 100 -test.run 'GPU|SourceCompiles'

echo "== 2. benchmarks"
timeout 75 "$B/bench.test" -test.run '^$' -test.bench 'TrainStepCUDA$' -test.benchtime 5x -test.timeout=70s >"$O/bench-train.log" 2>&1
timeout 30 "$B/bench.test" -test.run '^$' -test.bench 'TrainStepCUDAProfile' -test.benchtime 1x -test.v -test.timeout=25s >"$O/bench-profile.log" 2>&1
for a in "" "--tf32"; do
	timeout 45 "$PY" "$B/train_step.py" --device cuda --batch 8 --steps 5 $a >>"$O/torch-train.log" 2>&1
done
timeout 30 "$PY" "$B/train_step.py" --device cuda --batch 1 --steps 5 >>"$O/torch-train.log" 2>&1
timeout 70 "$B/wavenet.test" -test.run '^$' -test.bench 'GenerateCUDA' -test.benchtime 2x -test.timeout=65s >"$O/bench-generate.log" 2>&1

echo "== 3. training and synthesis commands"
for d in cuda cpu; do
	timeout 70 "$B/train-wavenet" --data "$B/dump" --out "$W/run-$d" --preset tiny --head adacat --components 15 --lambda 1e-4 \
		--steps 300 --batch-size 4 --max-time-steps 4096 --clip-norm 5 --eval-interval 100 --checkpoint-interval 0 \
		--log-interval 50 --device "$d" >"$O/train-$d.log" 2>&1
	rc=$?
	[[ $rc -ne 0 ]] && FAILED=1
	cp "$W/run-$d/metrics.jsonl" "$O/metrics-$d.jsonl" 2>/dev/null
	row "train-wavenet --device $d (300 steps, tiny adacat)" "exit $rc"
done
timeout 40 "$B/vocode" --device cuda -o "$W/vocode-cuda.wav" "$B/mel-example.npy" >"$O/vocode-cuda.log" 2>&1
rc=$?
[[ $rc -ne 0 ]] && FAILED=1
row "vocode --device cuda (built-in model)" "exit $rc, $(stat -c %s "$W/vocode-cuda.wav" 2>/dev/null || echo 0) bytes"

echo
echo "================ wavecat GPU check summary ================"
grep -h -m1 -o -E "cuda: [^;]*NVRTC [0-9.]+ kernels for compute_[0-9]+" "$O"/cuda.log | head -1
printf '%-62s %s\n' "CHECK" "RESULT"
printf '%s\n' "${ROWS[@]}"
for f in cuda outputs wavenet; do
	if grep -q -E -- '^--- FAIL|^panic:' "$O/$f.log" 2>/dev/null; then
		echo "-- failures in $f.log:"
		grep -m 12 -E -A4 -- '--- FAIL|^panic:' "$O/$f.log" | cut -c1-240
	fi
done
echo
printf '%-62s %s\n' "BENCHMARK" "RESULT"
grep -h -E '^Benchmark' "$O/bench-train.log" "$O/bench-generate.log" 2>/dev/null |
	awk '{ m=""; for (i = 3; i < NF; i++) if ($(i+1) ~ /samples\/s|GFLOP\/s|xRT|us\/step/) m = m $i " " $(i+1) " "; printf "%-62s %s %s\n", $1, $3 " " $4, m }'
grep -E '^torch|^best' "$O/torch-train.log" 2>/dev/null | sed 's/^/pytorch: /'
echo "-- training-step profile (fp32, 8 x 10240, synced per call):"
grep -E 'profile over|^ +[a-zA-Z].*ms/step' "$O/bench-profile.log" | head -24
echo "-- dev bits/sample (EMA) by step, cuda vs cpu:"
for d in cuda cpu; do
	printf '%-5s' "$d"
	grep '"type":"eval"' "$O/metrics-$d.jsonl" 2>/dev/null | sed -E 's/.*"step":([0-9]+).*"bits":([-0-9.e]+).*/ \1:\2/' | tr -d '\n'
	echo
done
grep -h -E 'samples/s|real time' "$O/vocode-cuda.log" | tail -2
echo "==========================================================="
rm -rf "$W"
exit $FAILED
