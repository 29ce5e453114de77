// runConformance(makeBackend): the one suite every backend passes (DESIGN.md). Call it from a
// backend package's vitest file; pass `skip` with a reason when the backend cannot run here.
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { Backend } from '../backend.js';
import { kernelCases } from './kernels.js';
import { modelCases } from './fixtures.js';

export { kernelCases } from './kernels.js';
export { modelCases, loadFixture, fixtureNames, fixturesDir } from './fixtures.js';
export { assertClose } from './compare.js';

export interface ConformanceOptions {
  /** When set, every case is registered as skipped with this reason (e.g. "no GPU adapter"). */
  skip?: string;
}

export function runConformance(name: string, makeBackend: () => Promise<Backend>, opts: ConformanceOptions = {}): void {
  const title = opts.skip ? `${name} conformance (skipped: ${opts.skip})` : `${name} conformance`;
  describe(title, () => {
    let be: Backend;
    if (!opts.skip) {
      beforeAll(async () => {
        be = await makeBackend();
      });
      afterAll(() => be?.dispose());
    }
    const test = opts.skip ? it.skip : it;
    describe('kernels', () => {
      for (const c of kernelCases()) test(c.name, () => c.run(be));
    });
    describe('model vs fixtures', () => {
      for (const c of modelCases()) test(c.name, () => c.run(be));
    });
  });
}
