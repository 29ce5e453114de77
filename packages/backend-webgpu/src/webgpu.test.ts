// The whole conformance suite on WebGPU (the built package), then the matmul and model cases
// under --precision f16 at precision.ts's tolerances. Without an adapter the suites are skipped
// with the reason; GPT2_EXPECT_WEBGPU=1 (set by .ci/run, which installs SwiftShader) turns a
// missing adapter into a failure instead.
import { expect, it } from 'vitest';
import { GPT2, TOLERANCES } from '@gpt2/core';
import { loadFixture, runConformance } from '@gpt2/core/conformance';
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
