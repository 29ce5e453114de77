#include "kernels.h"

// The dropout mask's 32 random bits for element i of the draw `seed`: core's dropoutHash
// (dropout.ts), Wellons' lowbias32 on u32 arithmetic, so every backend draws the same mask
static inline uint32_t dropout_hash(uint32_t seed, uint32_t i) {
  uint32_t x = seed * 0x9e3779b9u + i;
  x ^= x >> 16;
  x *= 0x21f0aaadu;
  x ^= x >> 15;
  x *= 0x735a2d97u;
  x ^= x >> 15;
  return x;
}

// out (N) += inp (N) * mult where dropout_hash(seed, i) >= threshold; a dropped element adds
// nothing. threshold = floor(p * 2^32) and mult = scale / (1 - p) come from the host (double
// precision, mult rounded once to float), as core's dropoutThreshold and dropoutMultiplier. The
// product is rounded before the add (no FMA contraction), so the result is the reference's bit for bit.
__attribute__((optimize("fp-contract=off")))
void scaled_dropout(float *out, const float *inp, float mult, uint32_t threshold, uint32_t seed, int64_t N) {
#pragma omp parallel
  {
    int64_t i0, i1;
    share(N, i0, i1);
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
      bool keep = dropout_hash(seed, (uint32_t)i) >= threshold;
      out[i] = keep ? out[i] + inp[i] * mult : out[i];
    }
  }
}
