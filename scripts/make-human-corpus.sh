#!/usr/bin/env bash
# make-human-corpus.sh: two LJSpeech-format corpora of real human speech
# from Debian's klettres-data (KLettres' letter and syllable recordings,
# about 50 minutes, 1,800 clips, one speaker per language; GPL-2+):
#
#   scripts/make-human-corpus.sh TRAIN_DIR HELDOUT_DIR
#
# HELDOUT_DIR gets the languages in HELDOUT_LANGS (default: en de es, three
# speakers), TRAIN_DIR every other language. Each clip is converted by sox
# to 22050 Hz mono 16-bit, its peak normalised to -3 dBFS (the recordings'
# levels differ by 20 dB), and named kl-<lang>-<alpha|syllab>-<name>; the
# text columns are the letter or syllable. Installs klettres-data and sox
# with apt-get when run as root and they are missing.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 TRAIN_DIR HELDOUT_DIR" >&2; exit 2; }
train=$1 heldout=$2
heldout_langs=${HELDOUT_LANGS:-"en de es"}
src=/usr/share/klettres
need=()
[ -d "$src" ] || need+=(klettres-data)
command -v sox >/dev/null || need+=(sox)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "$0: needs ${need[*]}: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  if ! out=$(apt-get install -y -qq --no-install-recommends "${need[@]}" 2>&1); then
    echo "$0: could not install ${need[*]}:" >&2
    echo "$out" | tail -5 >&2
    exit 1
  fi
fi
for d in "$train" "$heldout"; do
  if [ -e "$d/metadata.csv" ]; then
    echo "$0: $d/metadata.csv exists; not overwriting a corpus" >&2
    exit 1
  fi
  mkdir -p "$d/wavs"
done
n_train=0 n_held=0
tmp_train=$(mktemp) tmp_held=$(mktemp)
trap 'rm -f "$tmp_train" "$tmp_held"' EXIT
for langdir in "$src"/*/; do
  lang=$(basename "$langdir")
  for kind in alpha syllab; do
    [ -d "$langdir$kind" ] || continue
    for f in "$langdir$kind"/*.ogg; do
      [ -e "$f" ] || continue
      name=$(basename "$f" .ogg)
      id="kl-$lang-$kind-$(printf '%s' "$name" | tr -c 'A-Za-z0-9_-' '_')"
      dest=$train meta=$tmp_train
      case " $heldout_langs " in *" $lang "*) dest=$heldout meta=$tmp_held ;; esac
      # A clip sox cannot read is skipped with a message, not fatal.
      if ! sox -q "$f" -r 22050 -c 1 -b 16 "$dest/wavs/$id.wav.tmp.wav" gain -n -3 2>/dev/null; then
        echo "$0: skipped unreadable $f" >&2
        rm -f "$dest/wavs/$id.wav.tmp.wav"
        continue
      fi
      mv "$dest/wavs/$id.wav.tmp.wav" "$dest/wavs/$id.wav"
      text=$(printf '%s' "$name" | tr '|' ' ')
      printf '%s|%s|%s\n' "$id" "$text" "$text" >> "$meta"
      if [ "$dest" = "$train" ]; then n_train=$((n_train + 1)); else n_held=$((n_held + 1)); fi
    done
  done
done
sort "$tmp_train" > "$train/metadata.csv"
sort "$tmp_held" > "$heldout/metadata.csv"
echo "$train: $n_train clips; $heldout: $n_held clips (languages: $heldout_langs)"
