// Linear layers with int8 weights (core's model/int8.ts): out[n,j] = scale[j] * (inp[n,:] . q[j,:])
// + bias[j], q (OUT,IN) int8 with each row padded to a multiple of 4 bytes, fp32 arithmetic.
// Few rows (decoding, N <= SMALL_N): each weight row is read once as int8, widened to floats in
// registers and dotted with every input row held in L1: a quarter of the fp32 kernel's memory traffic.
// Many rows (prefill, evaluation): each thread widens a panel of PANEL weight rows of its block to
// floats in its own buffer (never the whole matrix) and multiplies it with the system BLAS's sgemm.
#include <cstring>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <vector>
#include "blas.h"
#include "kernels.h"

static const int PREFETCH = 4096; // bytes ahead the decoding kernel prefetches weights
static const int PANEL = 64; // weight rows widened at a time: 64 x 3072 floats = 768 KB, within L2

// 16 int8 weights widened to 16 floats: vpmovsxbd + vcvtdq2ps (GCC's generic vector conversions
// compile to scalar code or shuffles here, so x86 gets the intrinsics)
static inline v16 widen16(const int8_t *p) {
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

static inline int row_bytes(int IN) { return (IN + 3) & ~3; }

// out (R,OUT) columns j0..j1 for R <= SMALL_N input rows, W weight rows at a time (R*W accumulators;
// more rows in flight keep more of memory's bandwidth busy), unscaled dot products times scale[j]
// plus bias. The weights are prefetched PREFETCH bytes ahead: the hardware's prefetcher alone leaves
// the int8 stream at half the bandwidth the fp32 one gets.
template <int R, int W>
static void rows_forward(float *out, const float *inp, const int8_t *q, const float *scale, const float *bias, int IN, int OUT, int64_t j0, int64_t j1) {
  const int64_t rb = row_bytes(IN);
  for (int64_t j = j0; j < j1; j += W) {
    const int64_t have = j1 - j < W ? j1 - j : W;
    const int8_t *qw[W];
    for (int w = 0; w < W; w++) qw[w] = q + (j + (w < have ? w : 0)) * rb;
    v16 acc[R][W] = {};
    int i = 0;
    for (; i + 16 <= IN; i += 16) {
      v16 wv[W];
      for (int w = 0; w < W; w++) {
        if ((i & 63) == 0) __builtin_prefetch(qw[w] + i + PREFETCH);
        wv[w] = widen16(qw[w] + i);
        IN_REGISTER(wv[w]);
      }
      for (int r = 0; r < R; r++) {
        v16 xr = load16(inp + (int64_t)r * IN + i);
        IN_REGISTER(xr);
        for (int w = 0; w < W; w++) acc[r][w] += xr * wv[w];
      }
    }
    for (int r = 0; r < R; r++) {
      const float *x = inp + (int64_t)r * IN;
      for (int w = 0; w < have; w++) {
        float sum = hsum(acc[r][w]);
        for (int k = i; k < IN; k++) sum += x[k] * (float)qw[w][k];
        out[(int64_t)r * OUT + j + w] = scale[j + w] * sum + (bias ? bias[j + w] : 0.f);
      }
    }
  }
}

static void small_forward(float *out, const float *inp, const int8_t *q, const float *scale, const float *bias, int N, int IN, int OUT, int64_t j0, int64_t j1) {
  switch (N) {
    case 1: rows_forward<1, 4>(out, inp, q, scale, bias, IN, OUT, j0, j1); break;
    case 2: rows_forward<2, 4>(out, inp, q, scale, bias, IN, OUT, j0, j1); break;
    case 3: rows_forward<3, 2>(out, inp, q, scale, bias, IN, OUT, j0, j1); break;
    case 4: rows_forward<4, 2>(out, inp, q, scale, bias, IN, OUT, j0, j1); break;
    case 5: rows_forward<5, 2>(out, inp, q, scale, bias, IN, OUT, j0, j1); break;
    case 6: rows_forward<6, 2>(out, inp, q, scale, bias, IN, OUT, j0, j1); break;
    case 7: rows_forward<7, 2>(out, inp, q, scale, bias, IN, OUT, j0, j1); break;
    default: rows_forward<8, 2>(out, inp, q, scale, bias, IN, OUT, j0, j1); break;
  }
}

// out[:, j0:j1] for many rows: panels of PANEL weight rows widened into `panel`, multiplied by sgemm,
// then each column times its scale, plus bias
static void panel_forward(float *out, const float *inp, const int8_t *q, const float *scale, const float *bias, int N, int IN, int OUT, int64_t j0, int64_t j1,
                          std::vector<float> &panel) {
  const int64_t rb = row_bytes(IN);
  panel.resize((size_t)PANEL * IN);
  for (int64_t p0 = j0; p0 < j1; p0 += PANEL) {
    const int64_t rows = j1 - p0 < PANEL ? j1 - p0 : PANEL;
    for (int64_t r = 0; r < rows; r++) {
      const int8_t *src = q + (p0 + r) * rb;
      float *dst = panel.data() + r * IN;
#pragma omp simd
      for (int i = 0; i < IN; i++) dst[i] = (float)src[i];
    }
    blas.sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, rows, IN, 1.f, inp, IN, panel.data(), IN, 0.f, out + p0, OUT);
  }
  for (int64_t n = 0; n < N; n++) {
    float *o = out + n * OUT;
#pragma omp simd
    for (int64_t j = j0; j < j1; j++) o[j] = scale[j] * o[j] + (bias ? bias[j] : 0.f);
  }
}

// out (N,OUT) = scale * (inp @ q^T) + bias; with pre: pre = that, out = gelu(pre)
void matmul_int8_forward(float *out, float *pre, const float *inp, const int8_t *q, const float *scale, const float *bias, int N, int IN, int OUT) {
  float *dst = pre ? pre : out;
#pragma omp parallel
  {
    int64_t j0, j1;
    share_cols(OUT, j0, j1);
    if (j1 > j0) {
      const float *b = pre ? nullptr : bias; // with GELU the bias joins in its epilogue
      if (N <= SMALL_N) small_forward(dst, inp, q, scale, b, N, IN, OUT, j0, j1);
      else {
        static thread_local std::vector<float> panel;
        panel_forward(dst, inp, q, scale, b, N, IN, OUT, j0, j1, panel);
      }
      if (pre) bias_gelu(out, pre, bias, 0, N, OUT, j0, j1);
    }
  }
}
