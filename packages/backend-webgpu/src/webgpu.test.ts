// The whole conformance suite on WebGPU (the built package), then the matmul and model cases
// under --precision f16 at precision.ts's tolerances. Without an adapter the suites are skipped
// with the reason; GPT2_EXPECT_WEBGPU=1 (set by .ci/run, which installs SwiftShader) turns a
// missing adapter into a failure instead.
import { describe, expect, it } from 'vitest';
import { GPT2, TOLERANCES } from '@gpt2/core';
import { loadFixture, modelCases, runConformance } from '@gpt2/core/conformance';
import { createWebGPUBackend } from '../dist/index.js';

let reason: string | undefined;
try {
  (await createWebGPUBackend()).dispose();
} catch (err) {
  reason = (err as Error).message;
}
if (reason && process.env.GPT2_EXPECT_WEBGPU === '1') {
  it('finds a WebGPU adapter (GPT2_EXPECT_WEBGPU=1)', () => {
    throw new Error(`expected a WebGPU adapter: ${reason}`);
  });
}
runConformance('webgpu', () => createWebGPUBackend(), { skip: reason });
runConformance('webgpu', () => createWebGPUBackend({ precision: 'f16' }), { skip: reason, precision: 'f16' });

// guards the f16 run against a mode that rounds nothing (gpt2-tiny-fp16 shows the packing is exact)
it.skipIf(reason)('--precision f16 moves gpt2-tiny logits beyond the fp32 tolerance', async () => {
  const be = await createWebGPUBackend({ precision: 'f16' });
  const f = loadFixture('gpt2-tiny');
  const want = f.ref.float32('logits');
  const [B, T] = f.ref.tensors.get('inputs')!.shape;
  const m = new GPT2(be, f.config, f.params);
  await m.forward(f.ref.int32('inputs'), B, T);
  const got = await m.logits();
  be.dispose();
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  expect(err).toBeGreaterThan(TOLERANCES.fp32.logits);
  expect(err).toBeLessThan(TOLERANCES.f16.logits);
});

// Bindings capped at 64 KiB, so gpt2-odd's 191 KB token table, its 540 KB parameter and gradient
// buffers, its (111, 997) logits and (3, 37, 144) qkv are all split across bindings: the logits,
// every gradient and the AdamW steps must still match the fixture.
describe.skipIf(reason)('webgpu with bindings capped at 64 KiB (splitting)', () => {
  for (const c of modelCases().filter((c) => c.name.startsWith('gpt2-odd'))) {
    it(c.name, async () => {
      const be = await createWebGPUBackend({ maxBinding: 64 * 1024 });
      try {
        await c.run(be);
      } finally {
        be.dispose();
      }
    });
  }
});
