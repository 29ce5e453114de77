// The few CBLAS entry points we call, resolved with dlopen at run time, so the addon builds without
// BLAS headers and a missing BLAS is a message, not a load failure: OpenBLAS, BLIS or MKL on Linux,
// Accelerate on macOS. Each is asked to run single-threaded: the addon splits every GEMM over its
// own OpenMP threads (matmul.cc), so one pool does all the work and --threads is exact.
#pragma once
#include <string>

enum CblasOrder { CblasRowMajor = 101 };
enum CblasTranspose { CblasNoTrans = 111, CblasTrans = 112 };

struct Blas {
  void (*sgemm)(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc) = nullptr;
  std::string library; // e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64"
  std::string path;    // the file dlopen found
  bool reference = false; // netlib's reference BLAS: correct, but slower than the wasm backend

  /** Loads the first BLAS found; returns an empty string on success, else why not and what to install. */
  std::string load();
};

extern Blas blas;
