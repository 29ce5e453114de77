// The backend contract: opaque device buffers plus a fixed set of fused GPT-2 kernels
// (llm.c style: hand-written backward, no autograd). Core drives the graph; a backend only
// implements these kernels. Kernels are enqueued in order; only `read` and `sync` wait.
//
// Conventions (DESIGN.md):
// - outputs first, then inputs, then sizes (B, T, C, NH, HS, V ...);
// - linear weights are [OUT, IN], so every matmul is out = inp @ W^T + bias;
// - backward kernels ACCUMULATE (+=) into every gradient they write, parameter and activation
//   gradients alike, so callers zero scratch gradients first and gradient accumulation is free.
//   The one exception is crossEntropyBackward, which overwrites dlogits and may run in place
//   (dlogits === logits), as llm.c's fused classifier does;
// - fused where a pass over memory is saved (llm.c's fused kernels): the residual add with the
//   layernorm after it, the MLP's first matmul with its GELU, the classifier's loss with its
//   gradient;
// - integer buffers (tokens, targets, attentionDecode's positions) are 'i32'; everything else is 'f32',
//   but for the 'bf16' copies of GEMM operands a backend with `bf16Copies` takes (see there).

import { GPT2Error } from './errors.js';
import type { Precision } from './precision.js';
import type { Collective } from './train/collective.js';

/** 'bf16': bfloat16 values, two bytes each, on backends with `bf16Copies` only. */
export type DType = 'f32' | 'i32' | 'bf16';

/** An opaque handle to device memory owned by a backend. `length` counts elements. */
export interface Buf {
  readonly length: number;
  readonly dtype: DType;
}

export interface Kernels {
  /** out (B,T,C) = wte[tokens] + wpe[t]. tokens (B,T) i32, wte (V,C), wpe (>=T,C). */
  encoderForward(out: Buf, tokens: Buf, wte: Buf, wpe: Buf, B: number, T: number, C: number): void;
  /** dwte[tokens[b,t]] += dout[b,t]; dwpe[t] += dout[b,t]. */
  encoderBackward(dwte: Buf, dwpe: Buf, dout: Buf, tokens: Buf, B: number, T: number, C: number): void;

  /** out (N,C) = (inp - mean) * rstd * w + b, eps 1e-5; saves mean (N) and rstd (N). */
  layernormForward(out: Buf, mean: Buf, rstd: Buf, inp: Buf, w: Buf, b: Buf, N: number, C: number): void;
  /** Accumulates into dinp (N,C), dw (C), db (C). */
  layernormBackward(
    dinp: Buf, dw: Buf, db: Buf, dout: Buf, inp: Buf, w: Buf, mean: Buf, rstd: Buf, N: number, C: number,
  ): void;

  /**
   * res (N,C) = a + b, then out = layernorm(res) as layernormForward (saving mean and rstd): a
   * residual add fused with the layernorm that follows it. res may be a (in place).
   */
  residualLayernormForward(
    res: Buf, out: Buf, mean: Buf, rstd: Buf, a: Buf, b: Buf, w: Buf, bias: Buf, N: number, C: number,
  ): void;

  /**
   * out (N,OUT) = inp (N,IN) @ w (OUT,IN)^T + bias (OUT). On a backend with `bf16Copies`, inp and w
   * (here and in matmulGeluForward and matmulBackward) may be 'bf16' copies of the fp32 operands
   * (roundBf16), used as they are; an fp32 operand is rounded by the kernel, as before.
   */
  matmulForward(out: Buf, inp: Buf, w: Buf, bias: Buf | null, N: number, IN: number, OUT: number): void;
  /** pre (N,OUT) = inp @ w^T + bias, and out = gelu_new(pre): the MLP's first matmul fused with its GELU (pre is kept for geluBackward). */
  matmulGeluForward(out: Buf, pre: Buf, inp: Buf, w: Buf, bias: Buf | null, N: number, IN: number, OUT: number): void;
  /**
   * The linear layer with int8 weights (model/int8.ts), for generation and evaluation: out (N,OUT)
   * = inp (N,IN) @ (q * scale)^T + bias, as out[n,j] = scale[j] * sum_i inp[n,i] * q[j,i] + bias[j]
   * in fp32, reading q as int8 (never a whole fp32 copy of the matrix). q (OUT,IN) is int8 packed
   * four to an 'i32' element, row-major, little-endian, each row padded to int8RowBytes(IN);
   * scale (OUT) holds one float per output row. With pre (not null), pre gets that product and out =
   * gelu_new(pre), as matmulGeluForward. Optional: a backend without it cannot run int8 weights.
   */
  matmulInt8Forward?(
    out: Buf, pre: Buf | null, inp: Buf, q: Buf, scale: Buf, bias: Buf | null, N: number, IN: number, OUT: number,
  ): void;
  /**
   * dinp (N,IN) += dout @ w; dw (OUT,IN) += dout^T @ inp; dbias (OUT) += sum_n dout. A null dw or
   * dbias is a frozen weight (LoRA's base model): its product is skipped, not computed and dropped.
   */
  matmulBackward(
    dinp: Buf, dw: Buf | null, dbias: Buf | null, dout: Buf, inp: Buf, w: Buf, N: number, IN: number, OUT: number,
  ): void;

  /**
   * Causal self-attention. qkv (B,T,3C) holds q, k, v side by side, head h at columns h*HS.
   * out (B,T,C); lse (B,NH,T) saves each row's log-sum-exp of the scaled scores, so no (T,T)
   * matrix is kept and backward recomputes the scores.
   */
  attentionForward(out: Buf, lse: Buf, qkv: Buf, B: number, T: number, NH: number, HS: number): void;
  /** Accumulates into dqkv (B,T,3C). */
  attentionBackward(
    dqkv: Buf, dout: Buf, qkv: Buf, out: Buf, lse: Buf, B: number, T: number, NH: number, HS: number,
  ): void;
  /**
   * Cached attention for generation, each row at its own position: pos (B) 'i32' holds row b's
   * cache length before these T positions. Row b writes the k and v of its T new positions of qkv
   * (B,T,3C) at pos[b] .. pos[b]+T-1 of its rows of kCache and vCache (B,NH,maxT,HS), then attends
   * its query t causally over cache positions 0 .. pos[b]+t. out (B,T,C). A row with pos[b] < 0 is
   * an empty slot, skipped: neither its cache rows nor its out rows are written. T = prompt length
   * is the prefill, T = 1 a decode step (rows of a batch may then sit at different positions).
   */
  attentionDecode(
    out: Buf, qkv: Buf, kCache: Buf, vCache: Buf, pos: Buf, B: number, T: number, NH: number, HS: number,
    maxT: number,
  ): void;

  /** out (N) = gelu_new(inp): the GELU alone, after a LoRA-adapted c_fc whose sum precedes it. */
  geluForward(out: Buf, inp: Buf, N: number): void;
  /** dinp += gelu_new'(inp) * dout, for GPT-2's tanh-approximated GELU. */
  geluBackward(dinp: Buf, inp: Buf, dout: Buf, N: number): void;

  /**
   * losses (N) = -log softmax(logits (N,V))[targets]; a negative target gives loss 0. With hits
   * (N), in the same pass: 1 where the target is the row's argmax (its first maximum, as
   * torch.argmax), else 0 (and 0 for a negative target): next-token accuracy.
   */
  crossEntropyForward(losses: Buf, hits: Buf | null, logits: Buf, targets: Buf, N: number, V: number): void;
  /**
   * The fused classifier: losses (N) as crossEntropyForward, and dlogits (N,V) = scale *
   * (softmax(logits) - onehot(targets)), rows with a negative target 0, in one pass over the
   * logits. Overwrites; may be in place (dlogits === logits).
   */
  crossEntropyBackward(dlogits: Buf, losses: Buf, logits: Buf, targets: Buf, scale: number, N: number, V: number): void;

  /**
   * out (N) += scale * dropout_p(inp): LoRA's input dropout and alpha/r scaling in one pass (lora.ts),
   * and, being linear, its own backward. Element i is kept when dropoutHash(seed, i) >=
   * dropoutThreshold(p) (dropout.ts: integer arithmetic every backend reproduces bit for bit) and then
   * adds inp[i] * Math.fround(scale / (1 - p)); a dropped one adds nothing. p = 0 keeps every element:
   * out += scale * inp. 0 <= p < 1; seed is a u32.
   */
  scaledDropout(out: Buf, inp: Buf, scale: number, p: number, seed: number, N: number): void;

  /**
   * dst (N) 'bf16' = src (N) 'f32' rounded to bfloat16 (to nearest even, precision.ts): a GEMM
   * operand's copy, made once and used by every product that reads it. Backends with `bf16Copies`.
   */
  roundBf16?(dst: Buf, src: Buf, N: number): void;

  /** out (1) = sum x^2 over N elements (overwrites). */
  sumSquares(out: Buf, x: Buf, N: number): void;
  /**
   * One AdamW step over N elements, torch.optim.AdamW semantics with bias correction:
   * g = grads * gradScale; m, v updated; params -= lr * (mhat / (sqrt(vhat) + eps) + weightDecay * params).
   * step counts from 1. With `copy` (a 'bf16' buffer of N, backends with `bf16Copies`), the same pass
   * also writes the updated params rounded to it (roundBf16), so the copy never goes stale.
   */
  adamw(
    params: Buf, grads: Buf, m: Buf, v: Buf, N: number, lr: number, beta1: number, beta2: number, eps: number,
    weightDecay: number, step: number, gradScale: number, copy?: Buf | null,
  ): void;
}

export interface AllocOptions {
  /**
   * Filled a part at a time, and maybe never whole (a KV cache): a host-memory backend then maps it a
   * small page at a time, where it backs buffers read whole (weights, gradients, activations) with
   * huge pages.
   */
  sparse?: boolean;
}

/** Sums and broadcasts of device buffers across ranks, queued after the kernels before them (Backend.deviceCollective). */
export interface DeviceCollective {
  /** buf = the sum of every rank's buf, in place. */
  allReduce(buf: Buf): void;
  broadcast(buf: Buf, root: number): void;
  /** Kernels queued from now on wait for the collectives queued so far. */
  finish(): void;
}

export interface Backend {
  readonly name: string;
  readonly kernels: Kernels;
  /**
   * The GEMMs round their operands to bfloat16 (--precision bf16) and take them as 'bf16' copies
   * (alloc(n, 'bf16'), kernels.roundBf16): the model then keeps a copy of each weight matrix, written
   * by AdamW's own pass, and of each activation a product reads, so nothing is rounded twice.
   */
  readonly bf16Copies?: boolean;
  /**
   * The FLOP/s its matrix products can reach at the precision it runs, where known (cpu: measured
   * on its threads): what training's MFU is measured against.
   */
  peakFlops?(): number | undefined;
  /** A new zero-filled buffer of `length` elements. */
  alloc(length: number, dtype?: DType, opts?: AllocOptions): Buf;
  /** A view of `length` elements of `buf` starting at element `offset`; shares memory. */
  view(buf: Buf, offset: number, length: number): Buf;
  /** Copies host data into the start of `dst` (enqueued). */
  upload(dst: Buf, src: Float32Array | Int32Array): void;
  /** Waits for queued work, then copies an f32 buffer (or a 'bf16' one, widened) back to the host. */
  read(src: Buf): Promise<Float32Array>;
  /**
   * The host memory of an f32 buffer, shared, not copied: for backends whose buffers live in host
   * memory (cpu, wasm, reference), so a collective library (data-parallel training) reduces
   * gradients in place. Absent where buffers live on a device.
   */
  hostView?(buf: Buf): Float32Array;
  /**
   * Joins the ranks of a job for collectives on device buffers (cuda: NCCL, its id passed through
   * `comm`): for backends whose buffers hostView cannot reach. Every rank calls it at once.
   */
  deviceCollective?(comm: Collective): Promise<DeviceCollective>;
  /** Fills a buffer with zeros (enqueued). */
  zero(buf: Buf): void;
  /** Waits for all queued work. */
  sync(): Promise<void>;
  /**
   * Runs the kernels queued so far, now (backends that queue kernels on the host and run them
   * together: cpu): for timing one kernel on its own (bench --profile).
   */
  flush?(): void;
  /**
   * The milliseconds each kernel took, by name, since the last call; the first call starts the
   * timing (backends that time kernels where they run, without the host between them: cpu).
   */
  kernelMs?(): Record<string, number>;
  free(buf: Buf): void;
  dispose(): void;
  /** Human-readable facts for `gpt2 info` (device, threads, features). */
  describe(): Record<string, string>;
}

/**
 * `auto` is true when resolveBackend('auto') is choosing: a factory may then decline (e.g. a
 * software GPU). `precision` is the matmul mode asked for (precision.ts); a factory that does not
 * offer it throws unsupportedPrecision(...).
 */
export type BackendFactory = (opts: { auto: boolean; precision: Precision }) => Promise<Backend>;

interface Registration {
  name: string;
  priority: number;
  factory: BackendFactory;
}

const registry = new Map<string, Registration>();

/**
 * Makes a backend available to resolveBackend. Higher priority is tried first by 'auto'
 * (cuda 40, webgpu 30, cpu 25, wasm 20, reference 10). Backend packages register nothing on import; the
 * application calls this with their factory.
 */
export function registerBackend(name: string, factory: BackendFactory, priority: number): void {
  registry.set(name, { name, priority, factory });
}

export function registeredBackends(): string[] {
  return [...registry.values()].sort((a, b) => b.priority - a.priority).map((r) => r.name);
}

export interface BackendFailure {
  name: string;
  reason: string;
}

export interface ResolvedBackend {
  backend: Backend;
  /** Backends tried before this one and why each failed to initialise. */
  failures: BackendFailure[];
}

/**
 * Initialises the named backend, or with 'auto' the highest-priority one that initialises,
 * keeping the reason each failed one gave (as onnxruntime's resolveBackend does).
 */
export async function resolveBackend(name: string, opts: { precision?: Precision } = {}): Promise<ResolvedBackend> {
  const precision = opts.precision ?? 'fp32';
  const failures: BackendFailure[] = [];
  const order =
    name === 'auto' ? [...registry.values()].sort((a, b) => b.priority - a.priority) : [registry.get(name)];
  if (order[0] === undefined) {
    const known = registeredBackends().join(', ');
    throw new GPT2Error(`Unknown backend '${name}'; choose one of: auto, ${known}.`);
  }
  for (const reg of order) {
    if (!reg) continue;
    try {
      return { backend: await reg.factory({ auto: name === 'auto', precision }), failures };
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      if (name !== 'auto') throw new GPT2Error(`The ${reg.name} backend could not start: ${reason}`);
      failures.push({ name: reg.name, reason });
    }
  }
  throw new GPT2Error(
    `No backend could start: ${failures.map((f) => `${f.name} (${f.reason})`).join('; ')}.`,
  );
}
