#!/usr/bin/env bash
# make demo: the main job on data made here or shipped with the repository.
#  1. log-mel spectrograms of the bundled speech (vocode mel);
#  2. an LJSpeech-format corpus synthesised with espeak-ng (installed with
#     apt-get when missing and we are root), else the committed mini corpus;
#  3. preprocessing into a training dump;
#  4. a few minutes of CPU training of the tiny preset with the AdaCat head;
#  5. scores of the held-out eval split (vocode eval), when available;
#  6. synthesis of a held-out utterance (vocode), and the same utterance by
#     Griffin-Lim (vocode --griffin-lim, no model) to listen against;
#  7. the built-in model on a held-out espeak-ng utterance (other sentences,
#     other voices), with Griffin-Lim;
#  8. where the run, the plot and the metrics are.
# DEMO_STEPS overrides the number of training steps (default 1500; one run
# on 2 AMD EPYC cores took 6.3 minutes, a busy machine takes longer). The
# demo prints how long its training took.
set -euo pipefail
cd "$(dirname "$0")/.."
out=demo-out
steps=${DEMO_STEPS:-1500}
mkdir -p "$out/mels"
echo "== wavecat demo: log-mel spectrograms (80 bands, 22050 Hz, hop 256) of the bundled speech"
bin/vocode mel demo/samples/*.wav -o "$out/mels"
echo

echo "== corpus"
if ! command -v espeak-ng >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing espeak-ng (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # apt's own messages are kept for the failure line: a bare "could not
  # install" hid a dpkg lock held by another apt, which the lock timeout
  # now waits out.
  upd=$(apt-get update -qq 2>&1 >/dev/null) || true
  if ! err=$(apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=120 espeak-ng 2>&1 >/dev/null); then
    echo "could not install espeak-ng; apt-get said:"
    printf '%s\n%s\n' "$upd" "$err" | grep -v '^[[:space:]]*$' | tail -n 8 | sed 's/^/  /' || true
  fi
fi
corpus=testdata/minicorpus/LJSpeech-1.1
if command -v espeak-ng >/dev/null 2>&1; then
  if [ ! -f "$out/corpus/LJSpeech-1.1/metadata.csv" ]; then
    bin/train-wavenet make-corpus --out "$out/corpus/LJSpeech-1.1" --n 40
  fi
  corpus=$out/corpus/LJSpeech-1.1
else
  echo "espeak-ng is not available (install it with: apt-get install espeak-ng); using the committed mini corpus $corpus"
fi
echo

echo "== preprocessing $corpus"
bin/train-wavenet preprocess --data "$corpus" --out "$out/dump"
echo

run=$out/runs/tiny-adacat
echo "== training the tiny preset with the AdaCat head for $steps steps on CPU"
# A fresh run each time: the demo shows training from scratch. Gradient-norm
# clipping at 5 (r9y9 does not clip by default): without it this tiny AdaCat
# model at lr 1e-3 had loss spikes (dev bits -2.8 -> +0.4 around step 1200);
# with it dev bits fell steadily from 1.25 to -4.5 in 1500 steps.
rm -rf "$run"
t0=$SECONDS
bin/train-wavenet --data "$out/dump" --out "$run" --preset tiny --head adacat --components 15 --lambda 1e-4 \
  --steps "$steps" --batch-size 4 --max-time-steps 4096 --ema-decay 0.998 --clip-norm 5 \
  --eval-interval 250 --checkpoint-interval 500 --keep 2 --log-interval 50
t=$((SECONDS - t0))
echo "training took $((t / 60))m$(printf %02d $((t % 60)))s for $steps steps"
echo

if bin/vocode eval --help >/dev/null 2>&1; then
  echo "== scoring the held-out eval split (teacher-forced bits/sample; MCD and log-mel L1 after synthesis)"
  bin/vocode eval --checkpoint "$run" --data "$out/dump" --split eval -o "$out/eval.md"
  echo
fi
# Synthesis of a held-out utterance (the last id of the eval split) to a WAV.
heldout=$(awk '/"eval"/{f=1;next} f&&/\]/{exit} f{gsub(/[ ",]/,""); if($0!="") last=$0} END{print last}' "$out/dump/split.json")
if [ -n "$heldout" ]; then
  echo "== synthesising held-out utterance $heldout"
  bin/vocode "$out/dump/$heldout-feats.npy" -o "$out/heldout-$heldout.wav" --checkpoint "$run"
  bin/vocode --griffin-lim "$out/dump/$heldout-feats.npy" -o "$out/heldout-$heldout-griffin-lim.wav" --checkpoint "$run"
  echo
fi

# The built-in model (what `vocode` uses without --checkpoint) on sentences
# and voices that no make-corpus training corpus has (--held-out), next to
# the recording and Griffin-Lim. vocode's model line says how it measures.
builtin=""
if command -v espeak-ng >/dev/null 2>&1; then
  echo "== the built-in model on held-out speech (sentences and voices it never heard)"
  if [ ! -f "$out/heldout/LJSpeech-1.1/metadata.csv" ]; then
    bin/train-wavenet make-corpus --held-out --out "$out/heldout/LJSpeech-1.1" --n 3 -q
  fi
  bin/train-wavenet preprocess --data "$out/heldout/LJSpeech-1.1" --out "$out/heldout/dump" -q
  hid=$(head -n 1 "$out/heldout/LJSpeech-1.1/metadata.csv" | cut -d'|' -f1)
  builtin=$out/builtin-$hid.wav
  bin/vocode "$out/heldout/dump/$hid-feats.npy" -o "$builtin"
  bin/vocode --griffin-lim "$out/heldout/dump/$hid-feats.npy" -o "$out/builtin-$hid-griffin-lim.wav"
  echo
fi

echo "demo outputs are in $out/:"
echo "  mel spectrograms: $out/mels/"
echo "  corpus:           $corpus"
echo "  training dump:    $out/dump/"
echo "  run:              $run/ (checkpoints: $run/$(cat "$run/latest" 2>/dev/null || echo 'step-*'))"
echo "  metrics:          $run/metrics.jsonl"
echo "  plot:             $run/loss.png"
[ -f "$out/eval.md" ] && echo "  held-out scores:  $out/eval.md"
[ -n "$heldout" ] && echo "  held-out speech:  $out/heldout-$heldout.wav (ground truth: $corpus/wavs/$heldout.wav; Griffin-Lim: $out/heldout-$heldout-griffin-lim.wav)"
[ -n "$builtin" ] && echo "  built-in model:   $builtin (ground truth: $out/heldout/LJSpeech-1.1/wavs/$hid.wav; Griffin-Lim: $out/builtin-$hid-griffin-lim.wav)"
exit 0
