import { describe, expect, it } from 'vitest';
import { bf16CopyCases, runCases, runConformance } from '../../conformance/index.js';
import { createReferenceBackend } from './index.js';

describe('accuracy (next-token hits) by hand', () => {
  it('counts a target when it is the first maximum of its logits, as torch.argmax', async () => {
    const be = createReferenceBackend();
    const logits = be.alloc(12), targets = be.alloc(4, 'i32'), losses = be.alloc(4), hits = be.alloc(4);
    be.upload(logits, Float32Array.of(1, 3, 2, /**/ 5, 5, 0, /**/ 0, 1, 1, /**/ 2, 0, 0));
    be.upload(targets, Int32Array.of(1, 1, 1, -100)); // argmax 1 (hit), tie 0/1 (argmax 0: miss), tie 1/2 (argmax 1: hit), ignored
    be.kernels.crossEntropyForward(losses, hits, logits, targets, 4, 3);
    expect([...(await be.read(hits))]).toEqual([1, 0, 1, 0]);
  });
});

runConformance('reference', async () => createReferenceBackend());
// the emulated reduced-precision modes: the definition the tolerances in precision.ts come from
for (const precision of ['tf32', 'bf16', 'f16'] as const) {
  runConformance('reference (emulated)', async () => createReferenceBackend({ precision }), { precision });
}
// the bf16 copies of weights and activations the emulation keeps, as a bf16 backend does
runCases('reference (emulated) bf16 copies', async () => createReferenceBackend({ precision: 'bf16' }), bf16CopyCases());
