// The arithmetic peak of this machine's cores, measured: every thread runs 12 independent chains of
// fused multiply-adds (fp32), or of AVX512-BF16's dot products (bf16), on registers alone, for a few
// milliseconds. What training's MFU (model FLOPs utilization) is measured against.
#include <omp.h>
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif
#include "kernels.h"

// the 12 chains, each its own variable (an array of them would live on the stack)
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECLARE(c) auto a##c = start((float)c);
#define STEP(c) a##c = op(a##c); IN_REGISTER(a##c);
#define SUM(c) + first(a##c)

template <class V, class Start, class Op, class First>
static float chains(long iters, Start start, Op op, First first) {
  CHAINS(DECLARE)
  for (long i = 0; i < iters; i++) {
    CHAINS(STEP)
  }
  return 0.f CHAINS(SUM);
}

// FLOP/s of `threads` threads running `iters` rounds of the 12 chains
static double run(int bf16, int threads, long iters) {
  float sink = 0;
  double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
  {
    if (!bf16) {
      const v16 x = v16{} + 1.0001f, y = v16{} + 0.9999f;
      sink += chains<v16>(iters, [](float c) { return v16{} + c; }, [&](v16 a) { return a * x + y; }, [](v16 a) { return a[0]; });
    }
#if defined(__AVX512BF16__)
    else {
      const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3c00); // 1.0, 2^-7
      sink += chains<__m512>(iters, [](float c) { return _mm512_set1_ps(c); }, [&](__m512 acc) { return _mm512_dpbf16_ps(acc, a, b); }, [](__m512 acc) { return _mm512_reduce_add_ps(acc); });
    }
#endif
  }
  double seconds = omp_get_wtime() - t0;
  volatile float keep = sink;
  (void)keep;
  // per round: 12 chains x 16 lanes x 2 FLOPs (a multiply-add; a bf16 dot product does 2 of them a lane)
  return 12.0 * 16 * 2 * (bf16 ? 2 : 1) * iters * threads / seconds;
}

// FLOP/s over all threads, the best of three passes of a few ms after one that starts the threads
// and the clocks; 0 where the kind has no instruction here (bf16 without AVX512-BF16)
double peak_flops(int bf16, int threads) {
#if !defined(__AVX512BF16__)
  if (bf16) return 0;
#endif
  run(bf16, threads, 1 << 20);
  double best = 0;
  for (int k = 0; k < 3; k++) {
    double f = run(bf16, threads, 1 << 21);
    if (f > best) best = f;
  }
  return best;
}
