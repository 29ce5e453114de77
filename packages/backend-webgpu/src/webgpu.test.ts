// The whole conformance suite on WebGPU (the built package). Without an adapter the suite is
// skipped with the reason; GPT2_EXPECT_WEBGPU=1 (set by .ci/run, which installs SwiftShader)
// turns a missing adapter into a failure instead.
import { it } from 'vitest';
import { runConformance } from '@gpt2/core/conformance';
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
