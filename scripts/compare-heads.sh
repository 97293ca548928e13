#!/usr/bin/env bash
# compare-heads.sh: the AdaCat paper's vocoder comparison (its Table 3) at the
# scale this project can afford: one model per output head, all with the
# built-in model's shape and recipe (scripts/train-default.sh), the same
# corpus, the same number of steps and the same seed, then one `vocode eval`
# over every checkpoint on the held-out set (teacher-forced bits/sample with
# standard errors, free-running quality, original and Griffin-Lim rows).
#
#   scripts/compare-heads.sh cuda        # on a GPU
#   scripts/compare-heads.sh cpu         # on CPU (slow: see STEPS)
#
# Environment: STEPS (per head, default 20000), OUT (default build/heads),
# THREADS (CPU threads per training run; 0, the default, all cores; two
# scripts with HEADS split between them and THREADS=1 use two cores),
# TRAIN_ONLY (1: train, skip the table),
# HEADS (space-separated names from the list below, default all), MAX_UTTS
# (score only the first N held-out utterances; 0, the default, all), CORPUS
# (a dump to train on; default the built-in model's, made as
# train-default.sh makes it). A run that exists is resumed up to STEPS, so
# the script continues where it stopped. The table goes to $OUT/table.md and
# $OUT/table.json; with LISTENING=1 a listening test over the same
# checkpoints is exported to $OUT/listening. The table and the listening
# test take the heads' own output (POSTFILTER, default none: vocode's
# postfilter would hide the differences between heads). The listening test
# takes LISTENING_UTTS utterances (default 4) at LUFS (default -30: at -23
# the loudest undertrained heads' peaks clip, which the export refuses).
set -euo pipefail
cd "$(dirname "$0")/.."
device=${1:-cpu}
case $device in cpu | cuda) ;; *) echo "usage: $0 cpu|cuda" >&2; exit 2 ;; esac
out=${OUT:-build/heads}
steps=${STEPS:-20000}

# Each head at the built-in model's shape; the categoricals and AdaCat k=128
# have the same output width (256 channels).
declare -A head=(
  [mulaw256]="--head mulaw --bins 256"
  [cat256]="--head categorical --bins 256"
  [mol10]="--head mol --mixtures 10"
  [gaussian]="--head gaussian"
  [adacat15]="--head adacat --components 15 --lambda 0.0001"
  [adacat128]="--head adacat --components 128 --lambda 0.0001"
  [adacat128-lambda0]="--head adacat --components 128 --lambda 0"
)
names=${HEADS:-mulaw256 cat256 mol10 gaussian adacat15 adacat128 adacat128-lambda0}
# The built-in model's recipe (scripts/train-default.sh), from scratch.
shape=(--preset tiny --layers 16 --stacks 2 --residual-channels 32 --gate-channels 64 --skip-channels 32
  --max-time-steps 4096 --batch-size 4 --lr 5e-4 --clip-norm 1 --ema-decay 0.999 --seed 1
  --excitation --excitation-align --lag-taps 3)
settings=(--steps "$steps" --checkpoint-interval 500 --keep 2 --log-interval 50 --eval-interval 0 --threads "${THREADS:-0}")

make build >/dev/null
base=build/default-model
if [ -z "${CORPUS:-}" ]; then
  if [ ! -f "$base/dump/index.json" ]; then
    [ -f "$base/corpus/metadata.csv" ] || bin/train-wavenet make-corpus --out "$base/corpus" --n 400 -q
    bin/train-wavenet preprocess --data "$base/corpus" --out "$base/dump" -q
  fi
  CORPUS=$base/dump
fi
if [ ! -f "$base/heldout-dump/index.json" ]; then
  [ -f "$base/heldout/metadata.csv" ] || bin/train-wavenet make-corpus --held-out --out "$base/heldout" --n 12 -q
  bin/train-wavenet preprocess --data "$base/heldout" --out "$base/heldout-dump" -q
fi

ckpts=()
for n in $names; do
  [ -n "${head[$n]:-}" ] || { echo "unknown head name $n (known: ${!head[*]})" >&2; exit 2; }
  run=$out/$n
  start=$(date +%s)
  if compgen -G "$run/step-*" >/dev/null; then
    bin/train-wavenet --data "$CORPUS" --out "$run" --resume --device "$device" "${settings[@]}"
  else
    # shellcheck disable=SC2086 # the head's flags are words
    bin/train-wavenet --data "$CORPUS" --out "$run" --device "$device" "${shape[@]}" ${head[$n]} "${settings[@]}"
  fi
  echo "$n: $(($(date +%s) - start)) s of training in this call" | tee -a "$out/cost.txt"
  ckpts+=(--checkpoint "$run")
done

[ "${TRAIN_ONLY:-0}" = 1 ] && exit 0
max=(--max-utterances "${MAX_UTTS:-0}")
bin/vocode eval "${ckpts[@]}" --data "$base/heldout-dump" --split all "${max[@]}" --device "$device" \
  --postfilter "${POSTFILTER:-none}" -o "$out/table.json" | tee "$out/table.md"
if [ "${LISTENING:-0}" = 1 ]; then
  rm -rf "$out/listening"
  bin/vocode listening-test export "${ckpts[@]}" --data "$base/heldout-dump" --split all \
    --postfilter "${POSTFILTER:-none}" --lufs "${LUFS:--30}" --max-utterances "${LISTENING_UTTS:-4}" -o "$out/listening"
fi
