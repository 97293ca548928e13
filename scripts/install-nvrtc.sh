#!/usr/bin/env bash
# install-nvrtc.sh: install NVIDIA's runtime compiler (NVRTC) on a Debian 12
# (bookworm) build/CI machine, so `go test ./compute/cuda` compiles every
# CUDA kernel of the CUDA backend (TestKernelsCompile) without a GPU.
#
# Usage (as root, or with sudo available):  scripts/install-nvrtc.sh
#
# Debian ships NVRTC from CUDA 11.8 in the non-free component as package
# libnvrtc11.2 (~16 MB download, provides /usr/lib/x86_64-linux-gnu/
# libnvrtc.so.11.2 and its builtins). This script enables non-free for
# bookworm in its own sources file (leaving the existing ones alone),
# refreshes the package lists and installs the package. It is idempotent.
# Without it the kernel-compile tests skip with a message.
set -euo pipefail

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
	SUDO="sudo"
fi

if ldconfig -p 2>/dev/null | grep 'libnvrtc\.so' >/dev/null; then
	echo "install-nvrtc: NVRTC already present:"
	ldconfig -p | grep 'libnvrtc\.so'
	exit 0
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
