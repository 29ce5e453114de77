// The conformance suite without vitest: the same cases runConformance registers (one definition,
// conformanceCases), run one after another on a backend with each case's worst error kept, for
// `gpt2 selftest` and the release's check of a machine's GPU and drivers.
import type { Backend } from '../backend.js';
import type { Precision } from '../precision.js';
import { kernelCases, matmulCases, type KernelCase } from './kernels.js';
import { modelCases } from './fixtures.js';
import { int8KernelCases, int8ModelCases } from './int8.js';
import { loraModelCases } from './lora.js';

export { fixturesDir } from './fixtures.js';
import { withWorst, type Worst } from './compare.js';

/**
 * The suite at a precision: every kernel case in fp32 (only the matmul cases in a reduced mode), then
 * the model cases with LoRA's (in bf16 too: the copies of frozen weights a bf16 backend keeps; tf32's
 * and f16's change nothing LoRA does), then (fp32 only) int8 weights' kernel and model cases.
 */
export function conformanceCases(p: Precision = 'fp32'): { kernels: KernelCase[]; model: KernelCase[]; int8: KernelCase[] } {
  const fp32 = p === 'fp32';
  const lora = p === 'fp32' || p === 'bf16' ? loraModelCases(p) : [];
  return { kernels: fp32 ? kernelCases() : matmulCases(p), model: [...modelCases(p), ...lora], int8: fp32 ? [...int8KernelCases(), ...int8ModelCases()] : [] };
}

export interface CaseResult {
  name: string;
  group: 'kernels' | 'model' | 'int8';
  passed: boolean;
  ms: number;
  /** The comparison nearest to (or furthest past) its tolerance. */
  worst?: Worst;
  error?: string;
}

/**
 * Runs every case on `be`, calling `onResult` after each; never throws for a failed case. The int8
 * cases run where the backend has int8 kernels.
 */
export async function runSelftest(be: Backend, p: Precision = 'fp32', onResult?: (r: CaseResult) => void): Promise<CaseResult[]> {
  const { kernels, model, int8 } = conformanceCases(p);
  const results: CaseResult[] = [];
  for (const [group, cases] of [['kernels', kernels], ['model', model], ['int8', be.kernels.matmulInt8Forward ? int8 : []]] as const) {
    for (const c of cases) {
      const t0 = performance.now();
      const { worst, error } = await withWorst(() => c.run(be));
      const r: CaseResult = { name: c.name, group, passed: !error, ms: Math.round(performance.now() - t0), worst, ...(error ? { error: error.message } : {}) };
      results.push(r);
      onResult?.(r);
    }
  }
  return results;
}
