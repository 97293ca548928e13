#!/usr/bin/env bash
# Installs the optional tools the test suite uses (Debian packages): numpy and
# scipy for the independent reference implementations, espeak-ng for speech,
# sox for cross-checking WAV files; with "torch", also python3-torch for the
# PyTorch cross-checks. Without root or apt-get it only says what is missing.
set -u
pkgs=(python3-numpy python3-scipy python3-yaml espeak-ng sox libopenblas0-pthread chromium)
[ "${1:-}" = torch ] && pkgs+=(python3-torch)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "optional test tools missing (tests that need them will skip): ${missing[*]}"
  echo "install them with: sudo apt-get install ${missing[*]}"
  exit 0
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# apt's messages are kept for the warning (a bare "could not install" hid a
# dpkg lock held by another apt; the lock timeout now waits for it).
upd=$(apt-get update -qq 2>&1 >/dev/null) || true
if ! err=$(apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=120 "${missing[@]}" 2>&1 >/dev/null); then
  echo "warning: could not install ${missing[*]}; tests that need them will skip. apt-get said:"
  printf '%s\n%s\n' "$upd" "$err" | grep -v '^[[:space:]]*$' | tail -n 8 | sed 's/^/  /'
fi
exit 0
