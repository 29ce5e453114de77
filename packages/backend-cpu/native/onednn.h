// oneDNN's matmul primitive, resolved with dlopen at run time as the BLAS is (blas.h), so the addon
// builds without oneDNN's headers and a missing library is a message. Its C API differs between
// 2.x (Debian 12's 2.6: descriptors are structs, initialised then turned into primitive
// descriptors) and 3.x (descriptors are handles, one call per primitive descriptor): onednn.cc
// speaks both. Used for the GEMMs of many rows (matmul.cc): fp32, and bf16 operands with fp32
// accumulation and output (--precision bf16).
#pragma once
#include <cstdint>
#include <string>

enum class Dt { bf16 = 2, f32 = 3 }; // dnnl_data_type_t, the same in 2.x and 3.x

// A matrix operand: its first element and its strides in elements (row, column), so a transposed
// view of a row-major matrix is just other strides.
struct Operand {
  const void *p;
  int64_t rowStride, colStride;
};

struct Onednn {
  std::string version; // "2.6.3"
  std::string path;    // the file dlopen found
  std::string isa;     // the instruction set its kernels dispatch to, e.g. "avx512_core_bf16"
  bool bf16 = false;   // that instruction set computes bf16 products in hardware (AVX512-BF16 or AMX)

  /** Loads oneDNN once (GPT2_ONEDNN names another file); returns "" on success, else why not and what to install. */
  std::string load();
  bool loaded() const { return !version.empty(); }

  /**
   * C (M,N; rows ldc apart) = A (M,K) @ B (K,N) [+ bias (N)], or C += A @ B when accumulate. A and B
   * of type dt. With packB, B is first reordered into the blocked layout the matmul reads fastest
   * (its "any" format; a scratch kept with the primitive): for a B read many times by one product.
   */
  void matmul(Dt dt, int64_t M, int64_t N, int64_t K, Operand A, Operand B, const float *bias, float *C, int64_t ldc, bool accumulate, bool packB = false);

  /** The implementation oneDNN chose for the newest matmul primitive of type dt ("brg:avx512_core_bf16"), "" before any. */
  std::string impl(Dt dt) const { return dt == Dt::bf16 ? implBf16 : implF32; }

  std::string implF32, implBf16;
};

extern Onednn onednn;
