// The dropout mask of the scaledDropout kernel (backend.ts): a counter-based hash of (seed, i), so
// a mask is never stored (backward recomputes it from the seed) and every backend draws the same
// one. The hash is Wellons' lowbias32 with TheIronBorn's constants, on u32 arithmetic that WGSL,
// CUDA, C++ and WebAssembly all have.

/** The mask's 32 random bits for element i of the draw `seed` (both u32). */
export function dropoutHash(seed: number, i: number): number {
  let x = (Math.imul(seed, 0x9e3779b9) + i) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x21f0aaad) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x735a2d97) >>> 0;
  x ^= x >>> 15;
  return x >>> 0;
}

/** Elements whose hash is at least this are kept: floor(p * 2^32), computed in float64 on the host. */
export function dropoutThreshold(p: number): number {
  return Math.min(0xffffffff, Math.floor(p * 4294967296));
}

/** What a kept element is multiplied by: scale / (1 - p) rounded to float32, computed on the host. */
export function dropoutMultiplier(scale: number, p: number): number {
  return Math.fround(scale / (1 - p));
}
