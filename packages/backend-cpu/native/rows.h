// The product of a few input rows with a weight matrix [OUT, IN]: decoding (one row a sequence) and
// serving (one row a slot), N <= ROWS_N, where a GEMM library's blocking for many rows wastes most
// of its work. Weight rows are taken WB at a time and dotted with every input row, RB input rows at
// a time (RB x WB accumulators in registers), each weight vector loaded (and widened, for bf16 and
// int8 weights) once per group of RB rows. Every (input row, weight row) pair is one chain of fused
// multiply-adds over the row in the same order, whatever RB, WB or N: a row's result does not
// depend on how many rows share the call (continuous batching relies on it), and matches the
// decoding kernel's of earlier releases. Used by matmul.cc (fp32 and bf16 weights) and
// matmul-int8.cc (int8 weights, times their row scales).
#pragma once
#include <cstring>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#include "kernels.h"

// products of at most this many rows run here, more go to a GEMM: oneDNN's or the BLAS's fp32 GEMM
// is as fast from about 24 rows on (here: 16 rows 148 against 134 GFLOP/s, 32 rows 180 against 195),
// the int8 panels' much later (64 rows: 220 against 123)
const int ROWS_F32 = 16, ROWS_I8 = 64;

// how the kernel reads each kind of weight: 16 at a time as floats, or one. ROWS: weight rows a
// product of 1-3 input rows takes at a time, enough independent chains to keep the loads busy (a
// widened weight takes more than the multiply-add's latency to come). PREFETCH: bytes ahead the
// kernel prefetches each weight row (int8: the hardware's prefetcher alone leaves its stream at
// half the bandwidth an fp32 one gets; 16 KB ahead decodes 7% faster than 4 KB, interleaved runs
// of bench --task generate --quantize int8 --batch 1; 32 KB was slower in the kernel alone)
struct F32 {
  typedef float T;
  static const int ROWS = 1, PREFETCH = 0;
  static v16 load(const float *p) { return load16(p); }
  static float at(const float *p, int k) { return p[k]; }
};
struct BF16 {
  typedef uint16_t T;
  static const int ROWS = 2, PREFETCH = 0;
  static v16 load(const uint16_t *p) { return load16_bf16(p); }
  static float at(const uint16_t *p, int k) {
    uint32_t u = (uint32_t)p[k] << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};
struct I8 {
  typedef int8_t T;
  static const int ROWS = 4, PREFETCH = 16384;
  // vpmovsxbd + vcvtdq2ps (GCC's generic vector conversions compile to scalar code here)
  static v16 load(const int8_t *p) {
    v16 v;
#if defined(__AVX512F__)
    __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
    __builtin_memcpy(&v, &f, sizeof v);
#elif defined(__AVX2__)
    __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
    __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8))));
    __builtin_memcpy(&v, &lo, 32);
    __builtin_memcpy((char *)&v + 32, &hi, 32);
#else
    for (int i = 0; i < 16; i++) v[i] = (float)p[i];
#endif
    return v;
  }
  static float at(const int8_t *p, int k) { return (float)p[k]; }
};

// out[r, j] for input rows x[0..RB) (xs apart) and weight rows wr[0..WB): the sums, times scale[j]
// when scale is set, plus bias[j]
template <int RB, int WB, class W>
static inline void dot_block(float *out, int64_t os, const float *x, int64_t xs, const typename W::T *const *wr, const float *scale, const float *bias, int IN,
                             int64_t j) {
  v16 acc[RB][WB];
  for (int r = 0; r < RB; r++)
    for (int w = 0; w < WB; w++) acc[r][w] = v16{};
  int i = 0;
  for (; i + 16 <= IN; i += 16) {
    v16 wv[WB];
    for (int w = 0; w < WB; w++) {
      if (W::PREFETCH && (i * sizeof(typename W::T)) % 64 == 0) __builtin_prefetch((const char *)(wr[w] + i) + W::PREFETCH);
      wv[w] = W::load(wr[w] + i);
      IN_REGISTER(wv[w]);
    }
    for (int r = 0; r < RB; r++) {
      v16 xr = load16(x + r * xs + i);
      IN_REGISTER(xr);
      for (int w = 0; w < WB; w++) acc[r][w] += xr * wv[w];
    }
  }
  for (int r = 0; r < RB; r++)
    for (int w = 0; w < WB; w++) {
      float s = hsum(acc[r][w]);
      for (int k = i; k < IN; k++) s += x[r * xs + k] * W::at(wr[w], k);
      out[r * os + j + w] = (scale ? scale[j + w] * s : s) + (bias ? bias[j + w] : 0.f);
    }
}

// RB rows (a run-time count below RBMAX) against WB weight rows
template <int RBMAX, int WB, class W>
static inline void dot_rows(float *out, int64_t os, const float *x, int64_t xs, int rb, const typename W::T *const *wr, const float *scale, const float *bias, int IN,
                            int64_t j) {
  if constexpr (RBMAX > 1)
    if (rb < RBMAX) return dot_rows<RBMAX - 1, WB, W>(out, os, x, xs, rb, wr, scale, bias, IN, j);
  dot_block<RBMAX, WB, W>(out, os, x, xs, wr, scale, bias, IN, j);
}

/**
 * out (N,OUT) columns j0..j1 = x (N,IN) . w rows j0..j1 (rows `stride` elements apart), times
 * scale[j] when given, plus bias[j] when given. Few rows read the weights as one stream, W::ROWS
 * rows at a time (the product is bound by memory); from 4 rows on, 4 weight rows at a time against
 * 4 input rows at a time (bound by the multiply-adds). AVX2 has half the registers: 2 by 2.
 */
template <class W>
static void rows_product(float *out, const float *x, const typename W::T *w, int64_t stride, const float *scale, const float *bias, int N, int IN, int OUT,
                         int64_t j0, int64_t j1) {
#if defined(__AVX512F__)
  const int RB = 4, WB = 4;
#else
  const int RB = 2, WB = 2;
#endif
  int64_t j = j0;
  if (N < 4) {
    const int F = W::ROWS;
    for (; j + F <= j1; j += F) {
      const typename W::T *wr[F];
      for (int k = 0; k < F; k++) wr[k] = w + (j + k) * stride;
      dot_rows<3, F, W>(out, OUT, x, IN, N, wr, scale, bias, IN, j);
    }
    for (; j < j1; j++) {
      const typename W::T *wr[1] = {w + j * stride};
      dot_rows<3, 1, W>(out, OUT, x, IN, N, wr, scale, bias, IN, j);
    }
    return;
  }
  for (; j + WB <= j1; j += WB) {
    const typename W::T *wr[WB];
    for (int k = 0; k < WB; k++) wr[k] = w + (j + k) * stride;
    for (int r = 0; r < N; r += RB) dot_rows<RB, WB, W>(out + (int64_t)r * OUT, OUT, x + (int64_t)r * IN, IN, N - r < RB ? N - r : RB, wr, scale, bias, IN, j);
  }
  for (; j < j1; j++) {
    const typename W::T *wr[1] = {w + j * stride};
    for (int r = 0; r < N; r += RB) dot_rows<RB, 1, W>(out + (int64_t)r * OUT, OUT, x + (int64_t)r * IN, IN, N - r < RB ? N - r : RB, wr, scale, bias, IN, j);
  }
}
