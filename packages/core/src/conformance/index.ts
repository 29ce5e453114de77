// runConformance(makeBackend): the one suite every backend passes (DESIGN.md). Call it from a
// backend package's vitest file; pass `skip` with a reason when the backend cannot run here.
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { Backend } from '../backend.js';
import type { Precision } from '../precision.js';
import { conformanceCases } from './selftest.js';
import type { KernelCase } from './kernels.js';

export { kernelCases, matmulCases } from './kernels.js';
export { modelCases, loadFixture, fixtureNames, fixturesDir, greedy } from './fixtures.js';
export { assertClose, withWorst, type Worst } from './compare.js';
export { conformanceCases, runSelftest, type CaseResult } from './selftest.js';
export { int8KernelCases, int8ModelCases } from './int8.js';
export { loraModelCases, loadLoraFixture, fixtureAdapter } from './lora.js';
export { bf16CopyCases } from './bf16-copies.js';

export interface ConformanceOptions {
  /** When set, every case is registered as skipped with this reason (e.g. "no GPU adapter"). */
  skip?: string;
  /**
   * A reduced-precision mode (precision.ts): runs the matmul cases and the model cases at that
   * mode's tolerances. The other kernels are fp32 in every mode; the fp32 suite covers them.
   */
  precision?: Precision;
  /** When set, the int8 cases are registered as skipped with this reason (a backend without matmulInt8Forward). */
  noInt8?: string;
}

export function runConformance(name: string, makeBackend: () => Promise<Backend>, opts: ConformanceOptions = {}): void {
  const p = opts.precision ?? 'fp32';
  const suite = p === 'fp32' ? `${name} conformance` : `${name} conformance at --precision ${p}`;
  const title = opts.skip ? `${suite} (skipped: ${opts.skip})` : suite;
  describe(title, () => {
    let be: Backend;
    if (!opts.skip) {
      beforeAll(async () => {
        be = await makeBackend();
      });
      afterAll(() => be?.dispose());
    }
    const test = opts.skip ? it.skip : it;
    const { kernels, model, int8 } = conformanceCases(p);
    describe('kernels', () => {
      for (const c of kernels) test(c.name, () => c.run(be));
    });
    describe('model vs fixtures', () => {
      for (const c of model) test(c.name, () => c.run(be));
    });
    if (int8.length) {
      describe(opts.noInt8 && !opts.skip ? `int8 weights (skipped: ${opts.noInt8})` : 'int8 weights', () => {
        for (const c of int8) (opts.noInt8 ? it.skip : test)(c.name, () => c.run(be));
      });
    }
  });
}

/** Registers cases beyond the suite (bf16CopyCases, say) on one backend, as runConformance does. */
export function runCases(title: string, makeBackend: () => Promise<Backend>, cases: KernelCase[], skip?: string): void {
  describe(skip ? `${title} (skipped: ${skip})` : title, () => {
    let be: Backend;
    if (!skip) {
      beforeAll(async () => {
        be = await makeBackend();
      });
      afterAll(() => be?.dispose());
    }
    for (const c of cases) (skip ? it.skip : it)(c.name, () => c.run(be));
  });
}
