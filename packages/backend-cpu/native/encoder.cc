#include "kernels.h"

// out (B,T,C) = wte[tokens[b,t]] + wpe[t]
void encoder_forward(float *out, const int *tokens, const float *wte, const float *wpe, int B, int T, int C) {
#pragma omp parallel for schedule(static)
  for (int bt = 0; bt < B * T; bt++) {
    const float *e = wte + (int64_t)tokens[bt] * C, *p = wpe + (int64_t)(bt % T) * C;
    float *o = out + (int64_t)bt * C;
#pragma omp simd
    for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
  }
}

// dwte[tokens[b,t]] += dout[b,t]; dwpe[t] += dout[b,t]. Tokens repeat, so threads split the
// channels, each walking every position in order: no two threads touch one element.
void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, int B, int T, int C) {
#pragma omp parallel
  {
    int64_t c0, c1;
    share(C, c0, c1);
    for (int bt = 0; bt < B * T; bt++) {
      const float *d = dout + (int64_t)bt * C;
      float *dw = dwte + (int64_t)tokens[bt] * C, *dp = dwpe + (int64_t)(bt % T) * C;
#pragma omp simd
      for (int64_t c = c0; c < c1; c++) {
        dw[c] += d[c];
        dp[c] += d[c];
      }
    }
  }
}
