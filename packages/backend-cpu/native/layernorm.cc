#include <cmath>
#include "kernels.h"

// one row: mean and rstd of x (C), then out = (x - mean) * rstd * w + b
static inline void norm_row(float *o, float *mean, float *rstd, const float *x, const float *w, const float *b, int C) {
  float m = 0;
#pragma omp simd reduction(+ : m)
  for (int c = 0; c < C; c++) m += x[c];
  m /= C;
  float v = 0;
#pragma omp simd reduction(+ : v)
  for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
  float s = 1.f / std::sqrt(v / C + 1e-5f);
#pragma omp simd
  for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
  *mean = m;
  *rstd = s;
}

// out (N,C) = layernorm(inp); saves mean (N) and rstd (N)
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) norm_row(out + (int64_t)n * C, mean + n, rstd + n, inp + (int64_t)n * C, w, b, C);
}

// res = a + b (res may be a), then out = layernorm(res): the row is normalised while in cache
void residual_layernorm_forward(float *res, float *out, float *mean, float *rstd, const float *a, const float *b, const float *w,
                                const float *bias, int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    int64_t off = (int64_t)n * C;
    float *r = res + off;
#pragma omp simd
    for (int c = 0; c < C; c++) r[c] = a[off + c] + b[off + c];
    norm_row(out + off, mean + n, rstd + n, r, w, bias, C);
  }
}

// llm.c's layernorm_backward: dinp += rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) row by
// row; dw, db += column sums, split over threads by columns (each walks every row in order)
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, const float *mean,
                        const float *rstd, int N, int C) {
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++) {
      int64_t off = (int64_t)n * C;
      const float *x = inp + off, *d = dout + off;
      float m = mean[n], s = rstd[n], dm = 0, dnm = 0;
#pragma omp simd reduction(+ : dm, dnm)
      for (int c = 0; c < C; c++) {
        float dn = w[c] * d[c];
        dm += dn;
        dnm += dn * (x[c] - m) * s;
      }
      dm /= C;
      dnm /= C;
      float *di = dinp + off;
#pragma omp simd
      for (int c = 0; c < C; c++) di[c] += (w[c] * d[c] - dm - (x[c] - m) * s * dnm) * s;
    }
    int64_t c0, c1;
    share(C, c0, c1);
    for (int n = 0; n < N; n++) {
      int64_t off = (int64_t)n * C;
      float m = mean[n], s = rstd[n];
#pragma omp simd
      for (int64_t c = c0; c < c1; c++) {
        db[c] += dout[off + c];
        dw[c] += (inp[off + c] - m) * s * dout[off + c];
      }
    }
  }
}
