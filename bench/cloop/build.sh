#!/bin/sh
# Builds cloop (see cloop.c) next to this script, or into $1. -O3 -ffast-math
# let gcc vectorise the gate's tanhf/expf through glibc's libmvec (the
# products are OpenBLAS's either way), so the anchor is not held back by
# scalar libm.
set -e
dir=$(dirname "$0")
out=${1:-$dir/cloop}
lib=/usr/lib/x86_64-linux-gnu/libopenblas.so.0
[ -e "$lib" ] || lib=-lopenblas
exec gcc -O3 -march=native -ffast-math -o "$out" "$dir/cloop.c" "$lib" -lm
