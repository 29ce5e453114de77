// The contract's kernels (packages/core/src/backend.ts) in C++, one file per kernel family named as
// in every backend: outputs first, then inputs, then llm.c's sizes. Every loop that splits work
// over threads uses a static OpenMP schedule and every reduction has a fixed order, so results are
// the same run to run for a given thread count (exact resume depends on it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cmath>
#include <omp.h>

// glibc's vector expf (libmvec), declared as its math.h declares it under -ffast-math, so GCC
// vectorises the loops that call expf (softmax, GELU) without fast-math's other assumptions
#if defined(__x86_64__) && defined(__GLIBC__)
extern "C" {
#pragma omp declare simd notinbranch
float expf(float) noexcept;
}
#endif

// encoder.cc
void encoder_forward(float *out, const int *tokens, const float *wte, const float *wpe, int B, int T, int C);
void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, int B, int T, int C);
// layernorm.cc
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int N, int C);
void residual_layernorm_forward(float *res, float *out, float *mean, float *rstd, const float *a, const float *b, const float *w,
                                const float *bias, int N, int C);
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, const float *mean,
                        const float *rstd, int N, int C);
// matmul.cc, matmul-int8.cc
// A GEMM operand: fp32, or under --precision bf16 the bfloat16 copy the model keeps of it
struct Mat {
  const void *p;
  bool bf16;
};
void set_gemm(bool onednn, bool bf16); // products of many rows through oneDNN (else the BLAS), bf16 operands
bool onednn_gemm();                    // whether they go through oneDNN
void matmul_forward(float *out, Mat inp, Mat w, const float *bias, int N, int IN, int OUT);
void matmul_gelu_forward(float *out, float *pre, Mat inp, Mat w, const float *bias, int N, int IN, int OUT);
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, Mat inp, Mat w, int N, int IN, int OUT);
void matmul_int8_forward(float *out, float *pre, const float *inp, const int8_t *q, const float *scale, const float *bias, int N, int IN, int OUT);
// attention.cc
void attention_forward(float *out, float *lse, const float *qkv, int B, int T, int NH, int HS);
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse, int B, int T, int NH, int HS);
void attention_decode(float *out, const float *qkv, float *kcache, float *vcache, const int *pos, int B, int T, int NH, int HS, int maxT);
// gelu.cc
void gelu_forward(float *out, const float *inp, int64_t N);
void gelu_backward(float *dinp, const float *inp, const float *dout, int64_t N);
// dropout.cc
void scaled_dropout(float *out, const float *inp, float mult, uint32_t threshold, uint32_t seed, int64_t N);
// crossentropy.cc
void crossentropy_forward(float *losses, float *hits, const float *logits, const int *targets, int N, int V);
void crossentropy_backward(float *dlogits, float *losses, const float *logits, const int *targets, float scale, int N, int V);
// round-bf16.cc: the bf16 copies of GEMM operands (--precision bf16)
void round_bf16(uint16_t *dst, const float *src, int64_t n);
void round_bf16_range(uint16_t *dst, const float *src, int64_t i0, int64_t i1); // this thread's [i0, i1)
void round_bf16_both(uint16_t *plain, uint16_t *transposed, const float *src, int64_t R, int64_t C);
// sample.cc: sampling's pass over a logits row, the ids core's draw() gives (fdlibm's exp, as V8's Math.exp)
void exp_many(double *x, int64_t n); // x[i] = exp(x[i])
int draw_row(const float *row, int V, double u);
// sum-squares.cc
float sum_squares(const float *x, int64_t N);
// adamw.cc
void adamw(float *params, const float *grads, float *m, float *v, int64_t N, float lr, float beta1, float beta2, float omb1, float omb2,
           float eps, float wd, float c1, float c2, float gradScale, uint16_t *copy);

// inside a parallel region: this thread's share [begin, end) of n items, split into contiguous
// near-equal parts
inline void share(int64_t n, int64_t &begin, int64_t &end) {
  int tid = omp_get_thread_num(), nt = omp_get_num_threads();
  begin = n * tid / nt;
  end = n * (tid + 1) / nt;
}

// inside a parallel region: this thread's share [c0, c1) of n columns, in multiples of 16 floats (one
// cache line), as the matmuls split their outputs
inline void share_cols(int64_t n, int64_t &c0, int64_t &c1) {
  const int64_t GRAIN = 16;
  share((n + GRAIN - 1) / GRAIN, c0, c1);
  c0 = c0 * GRAIN < n ? c0 * GRAIN : n;
  c1 = c1 * GRAIN < n ? c1 * GRAIN : n;
}

// the matmuls take at most this many rows with their own kernel, which reads each weight row once
// (decoding), and more with a GEMM. Its accumulators (rows x weight rows of 16 floats) fit AVX-512's
// 32 registers; on AVX2 (16 registers, two per 16 floats) they spill past one row, and oneDNN's or the
// BLAS's GEMM is 4-6x faster from 2 rows on (measured: 4 rows at 12 against 51 GFLOP/s)
#if defined(__AVX512F__)
const int SMALL_N = 8;
#else
const int SMALL_N = 1;
#endif

// matmul + GELU's epilogue (gelu.cc): pre (N,OUT) rows n0..n1, columns j0..j1 += bias, out = gelu(pre)
void bias_gelu(float *out, float *pre, const float *bias, int64_t n0, int64_t n1, int OUT, int64_t j0, int64_t j1);

// 16 floats, one AVX-512 register (two on AVX2 machines): GCC's portable vector extension, so the
// same source compiles for whichever vector unit -march names
typedef float v16 __attribute__((vector_size(64)));
static inline v16 load16(const float *p) {
  v16 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
// keeps a loaded vector in a register: without it GCC re-reads operands it could keep, which makes
// the small-N GEMM load-bound (only where one register holds 16 floats: AVX-512)
#if defined(__AVX512F__)
#define IN_REGISTER(v) asm("" : "+v"(v))
#else
#define IN_REGISTER(v)
#endif
static inline void store16(float *p, v16 v) { __builtin_memcpy(p, &v, sizeof v); }
typedef uint16_t u16x16 __attribute__((vector_size(32)));

// x rounded to bfloat16, nearest even (NaN stays a quiet NaN): precision.ts's rounding, one value
static inline uint16_t bf16_of(float x) {
  uint32_t u;
  __builtin_memcpy(&u, &x, 4);
  return (uint16_t)((u & 0x7fffffff) > 0x7f800000 ? (u >> 16) | 0x40 : (u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
// 16 bfloat16 values widened to floats (exact: the low 16 bits of each float are zero)
static inline v16 load16_bf16(const uint16_t *p) {
  typedef uint32_t u32x16 __attribute__((vector_size(64)));
  u16x16 h;
  __builtin_memcpy(&h, p, sizeof h);
  u32x16 u = __builtin_convertvector(h, u32x16) << 16;
  v16 v;
  __builtin_memcpy(&v, &u, sizeof v);
  return v;
}
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));
// the sum of a vector's lanes as a tree: a few shuffles and adds, not a 16-long dependency chain
static inline float hsum(v16 v) {
  v8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  v4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}
