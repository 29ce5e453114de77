#include <cmath>
#include "kernels.h"

// torch.optim.AdamW with bias correction; 1 - beta and the corrections c1 = 1 - beta1^step,
// c2 = 1 - beta2^step come from the host in double precision, rounded once. With copy, the same
// pass writes the updated weights' bf16 copy (round-bf16.cc), a block at a time while it is in cache.
static void step(float *p, const float *g, float *m, float *v, int64_t i0, int64_t i1, float lr, float b1, float b2, float omb1, float omb2,
                 float eps, float wd, float c1, float c2, float gs) {
#pragma omp simd
  for (int64_t i = i0; i < i1; i++) {
    float gi = g[i] * gs, mi = b1 * m[i] + omb1 * gi, vi = b2 * v[i] + omb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr * (mi / c1 / (std::sqrt(vi / c2) + eps) + wd * p[i]);
  }
}

void adamw(float *p, const float *g, float *m, float *v, int64_t N, float lr, float b1, float b2, float omb1, float omb2, float eps,
           float wd, float c1, float c2, float gs, uint16_t *copy) {
  const int64_t BLOCK = 4096;
#pragma omp parallel
  {
    int64_t i0, i1;
    share(N, i0, i1);
    for (int64_t b = i0; b < i1; b += BLOCK) {
      int64_t e = b + BLOCK < i1 ? b + BLOCK : i1;
      step(p, g, m, v, b, e, lr, b1, b2, omb1, omb2, eps, wd, c1, c2, gs);
      if (copy) round_bf16_range(copy, p, b, e);
    }
  }
}
