#!/usr/bin/env bash
# make demo: the main job on data that ships with the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
out=demo-out
mkdir -p "$out/mels"
echo "== wavecat demo: log-mel spectrograms (80 bands, 22050 Hz, hop 256) of the bundled speech"
bin/vocode mel demo/samples/*.wav -o "$out/mels"
echo
echo "demo outputs are in $out/:"
ls -1 "$out"/mels | sed "s|^|  $out/mels/|"
