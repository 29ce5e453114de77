// fp32 -> bfloat16, to nearest even (precision.ts's definition): the copies of GEMM operands that
// --precision bf16 reads (backend.ts 'bf16' buffers). AVX512-BF16's conversion instruction where the
// build has it (it also flushes inputs below 2^-126 to zero), else the same rounding in integer
// arithmetic on GCC's portable vectors.
#include <cstring>
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif
#include "kernels.h"

typedef uint32_t u32x16 __attribute__((vector_size(64)));

// 16 floats rounded to 16 bf16 at dst
static inline void round16(uint16_t *dst, v16 x) {
#if defined(__AVX512BF16__)
  __m256bh h = _mm512_cvtneps_pbh((__m512)x);
  std::memcpy(dst, &h, 32);
#else
  u32x16 u;
  std::memcpy(&u, &x, 64);
  u32x16 r = (u + 0x7fff + ((u >> 16) & 1)) >> 16;
  r = (u & 0x7fffffff) > 0x7f800000 ? (u >> 16) | 0x40 : r; // NaN stays a (quiet) NaN
  u16x16 h = __builtin_convertvector(r, u16x16);
  std::memcpy(dst, &h, 32);
#endif
}

void round_bf16_range(uint16_t *dst, const float *src, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 16 <= i1; i += 16) round16(dst + i, load16(src + i));
  for (; i < i1; i++) dst[i] = bf16_of(src[i]);
}

void round_bf16(uint16_t *dst, const float *src, int64_t n) {
#pragma omp parallel
  {
    int64_t i0, i1;
    share(n, i0, i1);
    round_bf16_range(dst, src, i0, i1);
  }
}

// one round of a 16x16 transpose in registers: rows i and i|D (i without bit D) exchange the halves
// that swap bit D of the row index with bit D of the column index
template <int D, class Lo, class Hi> static inline void swap_bit(v16 *x, Lo lo, Hi hi) {
  for (int i = 0; i < 16; i++)
    if (!(i & D)) {
      v16 a = x[i], b = x[i | D];
      x[i] = lo(a, b);
      x[i | D] = hi(a, b);
    }
}
#define SHUFFLE(...) [](v16 a, v16 b) { return __builtin_shufflevector(a, b, __VA_ARGS__); }

// rows r0..r0+16*H-1 and columns c..c+15 of src (R,C) rounded into both copies of that tile: the
// plain one as loaded, the transposed one after four rounds of swap_bit on each block of 16 rows
// (H = 2: each transposed row gets 32 values, a whole cache line, at once)
template <int H>
static void tile(uint16_t *plain, uint16_t *transposed, const float *src, int64_t R, int64_t C, int64_t r0, int64_t c) {
  v16 x[H][16];
  for (int h = 0; h < H; h++) {
    v16 *y = x[h];
    for (int i = 0; i < 16; i++) {
      const int64_t r = r0 + 16 * h + i;
      y[i] = load16(src + r * C + c);
      if (plain) round16(plain + r * C + c, y[i]);
    }
    swap_bit<1>(y, SHUFFLE(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30), SHUFFLE(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31));
    swap_bit<2>(y, SHUFFLE(0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29), SHUFFLE(2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31));
    swap_bit<4>(y, SHUFFLE(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27), SHUFFLE(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31));
    swap_bit<8>(y, SHUFFLE(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), SHUFFLE(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
  }
  for (int j = 0; j < 16; j++)
    for (int h = 0; h < H; h++) round16(transposed + (c + j) * R + r0 + 16 * h, x[h][j]);
}

// one value of both copies
static inline void one(uint16_t *plain, uint16_t *transposed, const float *src, int64_t R, int64_t C, int64_t r, int64_t c) {
  uint16_t h = bf16_of(src[r * C + c]);
  if (plain) plain[r * C + c] = h;
  transposed[c * R + r] = h;
}

// plain (R,C) = src (R,C) and transposed (C,R) = src^T, both rounded, in one read of src (plain may
// be null): the output gradient of a product, whose transposed copy makes the weight gradient's
// product read both its operands contiguously. Each thread takes a share of the columns (its own
// rows of the transposed copy), 64 at a time: their transposed rows are written whole, down all
// the rows, while they sit in L1, each tile writing 32 values (a cache line) to each.
void round_bf16_both(uint16_t *plain, uint16_t *transposed, const float *src, int64_t R, int64_t C) {
  const int64_t BLOCK = 64;
#pragma omp parallel
  {
    int64_t c0, c1;
    share_cols(C, c0, c1);
    const int64_t whole = c0 + (c1 - c0) / 16 * 16; // share_cols gives multiples of 16 but at the very end
    for (int64_t b = c0; b < whole; b += BLOCK) {
      const int64_t e = b + BLOCK < whole ? b + BLOCK : whole;
      int64_t r = 0;
      for (; r + 32 <= R; r += 32)
        for (int64_t c = b; c < e; c += 16) tile<2>(plain, transposed, src, R, C, r, c);
      for (; r + 16 <= R; r += 16)
        for (int64_t c = b; c < e; c += 16) tile<1>(plain, transposed, src, R, C, r, c);
      for (; r < R; r++)
        for (int64_t c = b; c < e; c++) one(plain, transposed, src, R, C, r, c);
    }
    for (int64_t c = whole; c < c1; c++)
      for (int64_t q = 0; q < R; q++) one(plain, transposed, src, R, C, q, c);
  }
}
