// Matmul precision modes. Every mode keeps fp32 master weights, activations, gradients and
// optimizer state, and accumulates every GEMM in fp32; a mode only rounds the GEMM operands:
// - fp32: nothing rounded. The default, and what DESIGN.md's fixture tolerances hold.
// - tf32: both operands of every GEMM rounded to TF32 (10-bit mantissa), as tensor cores do. cuda.
// - bf16: both operands of every GEMM rounded to bfloat16 (7-bit mantissa), as
//         torch.autocast(dtype=torch.bfloat16) does for linear layers. cuda, and cpu through oneDNN.
// - f16:  the weight operand stored as IEEE half (10-bit mantissa, 5-bit exponent) for the forward
//         and input-gradient products (half the weight traffic when decoding); activations and the
//         weight-gradient product stay fp32. webgpu.
// The reference backend can emulate each mode (createReferenceBackend({ precision })): that emulation is the
// readable definition, and it runs the conformance suite at the tolerances below in every CI run.
import { GPT2Error } from './errors.js';

export type Precision = 'fp32' | 'tf32' | 'bf16' | 'f16';
export const PRECISIONS: readonly Precision[] = ['fp32', 'tf32', 'bf16', 'f16'];

/** Which GEMM operands a mode rounds: 'all' (inputs, weights and output gradients) or only 'weights'. */
export const ROUNDED: Record<Precision, 'none' | 'all' | 'weights'> = { fp32: 'none', tf32: 'all', bf16: 'all', f16: 'weights' };

export function parsePrecision(s: string): Precision {
  if ((PRECISIONS as readonly string[]).includes(s)) return s as Precision;
  throw new GPT2Error(`Unknown precision '${s}'; choose one of: ${PRECISIONS.join(', ')}.`);
}

/** The error a backend gives for a mode it does not implement. */
export function unsupportedPrecision(backend: string, p: Precision, offered: readonly Precision[]): GPT2Error {
  return new GPT2Error(
    `The ${backend} backend offers --precision ${offered.join(' or ')}, not ${p}; tf32 runs on cuda, bf16 on cuda and on cpu (with oneDNN), f16 on webgpu.`,
  );
}

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);

/** x rounded to nearest-even with `drop` low mantissa bits cleared (fp32 has 23). */
function roundMantissa(x: number, drop: number): number {
  f[0] = x;
  if (!Number.isFinite(f[0])) return f[0];
  const half = (1 << (drop - 1)) - 1;
  u[0] = ((u[0] + half + ((u[0] >>> drop) & 1)) >>> drop) << drop;
  return f[0];
}

/** IEEE binary16, round to nearest even (subnormals below 2^-14, infinity above 65504). */
export function roundF16(x: number): number {
  const a = Math.abs(x);
  if (a >= 65520) return x > 0 ? Infinity : x < 0 ? -Infinity : x;
  if (a < 2 ** -14) {
    const q = a * 2 ** 24, r = Math.round(q), even = q - Math.floor(q) === 0.5 && r % 2 === 1 ? r - 1 : r;
    return Math.sign(x) * even * 2 ** -24;
  }
  return roundMantissa(x, 13);
}

/** The value a mode's GEMM sees in place of the fp32 value x. */
export function roundOperand(p: Precision, x: number): number {
  switch (p) {
    case 'fp32': return Math.fround(x);
    case 'tf32': return roundMantissa(x, 13);
    case 'bf16': return roundMantissa(x, 16);
    case 'f16': return roundF16(x);
  }
}

/**
 * Conformance tolerances per mode (absolute, with a relative part where a pair). fp32's are
 * DESIGN.md's. The others are 4x the largest error the reference emulation makes on the fixtures
 * (README, "Precision"), as headroom for hardware that truncates instead of rounding to nearest
 * and sums in another order. AdamW magnifies tiny gradients' rounding to a full lr-sized step,
 * hence the parameter tolerances. `greedy`: gpt2-tiny's 24 greedy tokens must match exactly
 * (its smallest top-1/top-2 logit gap is 0.19).
 */
export interface Tolerances {
  matmul: number; // matmul kernel outputs, per unit of sqrt(K) (random operands of DESIGN scale)
  logits: number;
  loss: number;
  grad: readonly [number, number];
  adamLoss: number;
  param: readonly [number, number];
  greedy: boolean;
}

export const TOLERANCES: Record<Precision, Tolerances> = {
  fp32: { matmul: 0, logits: 1e-4, loss: 1e-5, grad: [1e-4, 1e-3], adamLoss: 1e-4, param: [1e-5, 1e-4], greedy: true },
  tf32: { matmul: 2e-3, logits: 7e-3, loss: 3e-4, grad: [4e-4, 1e-3], adamLoss: 2e-4, param: [6e-3, 1e-4], greedy: true },
  bf16: { matmul: 1.6e-2, logits: 6e-2, loss: 2.5e-3, grad: [4e-3, 1e-3], adamLoss: 3e-3, param: [1.5e-2, 1e-4], greedy: true },
  f16: { matmul: 2e-3, logits: 5e-3, loss: 2e-4, grad: [2.5e-4, 1e-3], adamLoss: 2e-4, param: [4e-3, 1e-4], greedy: true },
};

/**
 * LoRA's cases (conformance/lora.ts) at a reduced mode, where they need more than the mode's own: an
 * adapter's gradient comes through more rounded products than a weight's (dy B, then du^T xs ...),
 * and its norm sums those errors. The same rule: 4x the emulation's largest error on the LoRA fixture
 * (bf16: 2.5e-3 on a gradient, 1.1e-2 on a norm of 1.8).
 */
export const LORA_TOLERANCES: Partial<Record<Precision, { grad: readonly [number, number]; norm: number }>> = {
  bf16: { grad: [1e-2, 1e-3], norm: 4.4e-2 },
};
