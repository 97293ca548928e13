#!/usr/bin/env bash
# install-nvrtc.sh: install NVIDIA's runtime compiler (NVRTC) on a Debian 12
# (bookworm) build/CI machine, so `go test ./compute/cuda` compiles every
# CUDA kernel of the CUDA backend (TestKernelsCompile) without a GPU.
#
# Usage (as root, or with sudo available):
#   scripts/install-nvrtc.sh                  # install libnvrtc11.2
#   scripts/install-nvrtc.sh --driver-lib DIR # also unpack (not install)
#       Debian's libcuda1 (NVIDIA driver 535 user-space library, ~3 MB) into
#       DIR; with WAVECAT_CUDA_LIBS=DIR, TestNewWithoutGPU then checks that
#       every driver entry point binds and that cuInit's CUDA_ERROR_NO_DEVICE
#       becomes a clean "no CUDA GPU found" error. Nothing else on the
#       machine changes (the library is only loaded by that test).
#
# Debian ships NVRTC from CUDA 11.8 in the non-free component as package
# libnvrtc11.2 (~16 MB download, provides /usr/lib/x86_64-linux-gnu/
# libnvrtc.so.11.2 and its builtins). This script enables non-free for
# bookworm in its own sources file (leaving the existing ones alone),
# refreshes the package lists and installs the package. It is idempotent.
# Without it the kernel-compile tests skip with a message.
set -euo pipefail

DRIVER_DIR=""
if [[ "${1:-}" == "--driver-lib" ]]; then
	DRIVER_DIR="${2:?--driver-lib needs a folder}"
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
	SUDO="sudo"
fi

unpack_driver() {
	[[ -n "$DRIVER_DIR" ]] || return 0
	local tmp
	tmp=$(mktemp -d)
	(cd "$tmp" && apt-get download libcuda1 libnvidia-ptxjitcompiler1)
	mkdir -p "$DRIVER_DIR"
	for deb in "$tmp"/*.deb; do
		dpkg -x "$deb" "$tmp/x"
	done
	cp -a "$tmp"/x/usr/lib/*/nvidia/current/. "$DRIVER_DIR"/
	rm -rf "$tmp"
	ls "$DRIVER_DIR"
	echo "install-nvrtc: driver library unpacked; run: WAVECAT_CUDA_LIBS=$DRIVER_DIR go test ./compute/cuda"
}

if ldconfig -p 2>/dev/null | grep 'libnvrtc\.so' >/dev/null; then
	echo "install-nvrtc: NVRTC already present:"
	ldconfig -p | grep 'libnvrtc\.so'
	if [[ -n "$DRIVER_DIR" ]]; then
		# apt-get download needs the non-free lists; fall through to set them up.
		:
	else
		exit 0
	fi
fi

. /etc/os-release
if [[ "${ID:-}" != "debian" || "${VERSION_CODENAME:-}" != "bookworm" ]]; then
	echo "install-nvrtc: this script knows Debian 12 (bookworm) only, found ${PRETTY_NAME:-unknown};" >&2
	echo "  elsewhere install NVRTC from the CUDA toolkit or 'pip install nvidia-cuda-nvrtc-cu12'" >&2
	echo "  and point WAVECAT_CUDA_LIBS at its lib folder." >&2
	exit 1
fi

SRC=/etc/apt/sources.list.d/wavecat-nonfree.sources
if [[ ! -f "$SRC" ]]; then
	$SUDO tee "$SRC" >/dev/null <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
	echo "install-nvrtc: added $SRC (bookworm non-free)"
fi
$SUDO apt-get update -qq
apt-cache policy libnvrtc11.2 | sed -n 1,3p
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libnvrtc11.2
ldconfig -p | grep 'libnvrtc\.so'
unpack_driver
