#include <cmath>
#include "kernels.h"

// a row's maximum and sum of exp(z - max)
static inline void row_softmax(const float *z, int V, float &mx, float &s) {
  mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (int i = 0; i < V; i++) mx = z[i] > mx ? z[i] : mx;
  s = 0;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < V; i++) s += expf(z[i] - mx);
}

// losses (N) = logsumexp(logits[n]) - logits[n, target]; 0 for a negative target. hits (N, may be
// null) = 1 where the target is the row's argmax: its logit is the maximum and no earlier one equals it
void crossentropy_forward(float *losses, float *hits, const float *logits, const int *targets, int N, int V) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float *z = logits + (int64_t)n * V;
    const int t = targets[n];
    if (hits) hits[n] = 0;
    if (t < 0) {
      losses[n] = 0;
      continue;
    }
    float mx, s;
    row_softmax(z, V, mx, s);
    losses[n] = std::log(s) + mx - z[t];
    if (hits && z[t] == mx) {
      int first = 0;
      while (z[first] != mx) first++;
      hits[n] = first == t ? 1.f : 0.f;
    }
  }
}

// The fused classifier: each row's loss, then dlogits = scale * (softmax - onehot) over the same
// row while it is in cache (in place when dlogits == logits: the target logit is read first)
void crossentropy_backward(float *dlogits, float *losses, const float *logits, const int *targets, float scale, int N, int V) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float *z = logits + (int64_t)n * V;
    float *d = dlogits + (int64_t)n * V;
    int t = targets[n];
    if (t < 0) {
      losses[n] = 0;
      for (int i = 0; i < V; i++) d[i] = 0;
      continue;
    }
    float mx, s, zt = z[t];
    row_softmax(z, V, mx, s);
    losses[n] = std::log(s) + mx - zt;
    float inv = scale / s;
#pragma omp simd
    for (int i = 0; i < V; i++) d[i] = expf(z[i] - mx) * inv;
    d[t] -= scale;
  }
}
