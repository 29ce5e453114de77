// Linear layers with int8 weights (core's model/int8.ts): out[n,j] = scale[j] * (inp[n,:] . q[j,:])
// + bias[j], q (OUT,IN) int8 with each row padded to a multiple of 4 bytes, fp32 arithmetic.
// Few rows (decoding and serving, N <= ROWS_I8): rows.h's kernel, each weight read as int8 and widened
// to floats in registers once per group of input rows: a quarter of the fp32 kernel's memory traffic.
// Many rows (prefill, evaluation): with oneDNN, the matrix widened to floats once and one fp32 GEMM;
// with the BLAS, each thread widens a panel of PANEL weight rows of its block to floats in its own
// buffer (never the whole matrix) and multiplies it with sgemm.
#include <cstring>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <vector>
#include "blas.h"
#include "kernels.h"
#include "onednn.h"
#include "rows.h"

static const int PANEL = 64; // weight rows widened at a time: 64 x 3072 floats = 768 KB, within L2

static inline int row_bytes(int IN) { return (IN + 3) & ~3; }

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

// many rows where oneDNN multiplies them: the whole matrix widened to floats once (a scratch of
// OUT x IN floats: 9.4 MB for GPT-2 124M's largest), one fp32 GEMM, then each column times its
// scale plus bias. 2.4x the panels' throughput on a 512-token prompt here.
static void onednn_int8(float *dst, const float *inp, const int8_t *q, const float *scale, const float *bias, int N, int IN, int OUT) {
  static std::vector<float> wide;
  wide.resize((size_t)OUT * IN);
  const int64_t rb = row_bytes(IN);
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < OUT; j++) {
    const int8_t *src = q + j * rb;
    float *w = wide.data() + j * IN;
#pragma omp simd
    for (int i = 0; i < IN; i++) w[i] = (float)src[i];
  }
  onednn.matmul(Dt::f32, N, OUT, IN, {inp, IN, 1}, {wide.data(), 1, IN}, nullptr, dst, OUT, false);
#pragma omp parallel
  {
    int64_t j0, j1;
    share_cols(OUT, j0, j1);
    for (int64_t n = 0; n < N; n++) {
      float *o = dst + n * OUT;
#pragma omp simd
      for (int64_t j = j0; j < j1; j++) o[j] = scale[j] * o[j] + (bias ? bias[j] : 0.f);
    }
  }
}

// out (N,OUT) = scale * (inp @ q^T) + bias; with pre: pre = that, out = gelu(pre)
void matmul_int8_forward(float *out, float *pre, const float *inp, const int8_t *q, const float *scale, const float *bias, int N, int IN, int OUT) {
  float *dst = pre ? pre : out;
  if (N > ROWS_I8 && onednn_gemm()) {
    onednn_int8(dst, inp, q, scale, pre ? nullptr : bias, N, IN, OUT);
    if (pre) {
#pragma omp parallel
      {
        int64_t j0, j1;
        share_cols(OUT, j0, j1);
        bias_gelu(out, pre, bias, 0, N, OUT, j0, j1);
      }
    }
    return;
  }
#pragma omp parallel
  {
    int64_t j0, j1;
    share_cols(OUT, j0, j1);
    if (j1 > j0) {
      const float *b = pre ? nullptr : bias; // with GELU the bias joins in its epilogue
      if (N <= ROWS_I8) rows_product<I8>(dst, inp, q, row_bytes(IN), scale, b, N, IN, OUT, j0, j1);
      else {
        static thread_local std::vector<float> panel;
        panel_forward(dst, inp, q, scale, b, N, IN, OUT, j0, j1, panel);
      }
      if (pre) bias_gelu(out, pre, bias, 0, N, OUT, j0, j1);
    }
  }
}
