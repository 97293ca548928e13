// Package cuda is the NVIDIA GPU compute backend: cuBLAS for the GEMMs and
// one small CUDA C file (kernels.cu) for everything else.
//
// Nothing CUDA is linked at build time. The driver API (libcuda.so.1),
// cuBLAS and NVRTC are found and dlopened when New runs, through purego, so
// the package builds with CGO_ENABLED=0 and needs no CUDA headers, nvcc or
// GPU on the build machine. Why: one binary (linked only to the system C
// library, which purego's dlopen needs) serves a laptop without a
// GPU (New returns an error and the caller falls back to the CPU backend)
// and a GPU server with whatever CUDA 11+ it has installed (system toolkit,
// pip's nvidia-* wheels, or a folder named by $WAVECAT_CUDA_LIBS). The
// kernels are compiled by NVRTC for the GPU at hand when New first runs and
// the PTX is cached on disk (os.UserCacheDir()/wavecat/cuda), so no fat
// binary per architecture is shipped either.
//
// Layout: row-major like the rest of compute; cuBLAS is column-major, so each
// GEMM is issued as its transpose (C^T = B^T A^T) with the operands swapped,
// which moves no data.
//
// Libraries are searched in $WAVECAT_CUDA_LIBS (colon-separated folders),
// $CUDA_HOME and $CUDA_PATH, $LD_LIBRARY_PATH, the standard install folders
// and pip's nvidia-* wheels, for CUDA 11, 12 or 13; when one is missing New
// returns a *LoadError listing every place tried and what to install, and
// when the driver loads but there is no GPU, an error wrapping ErrNoDevice.
//
// Every allocation comes from a caching allocator (size-bucketed free lists
// reused in stream order), every kernel and copy goes on one stream, and
// Upload/Download go through a pinned host buffer.
package cuda
