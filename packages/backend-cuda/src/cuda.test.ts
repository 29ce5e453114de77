// The whole conformance suite on CUDA, when this machine has a built addon and an NVIDIA GPU;
// otherwise skipped with the reason (the development machines and CI have nvcc but no GPU).
// Then the matmul and model cases again under --precision tf32 and bf16, at precision.ts's tolerances.
import { runConformance } from '@gpt2/core/conformance';
import { createCudaBackend } from '../dist/index.js';

let reason: string | undefined;
try {
  (await createCudaBackend()).dispose();
} catch (err) {
  reason = (err as Error).message;
}
runConformance('cuda', () => createCudaBackend(), { skip: reason, noInt8: 'the cuda backend has no int8 kernel (yet)' });
for (const precision of ['tf32', 'bf16'] as const) {
  runConformance('cuda', () => createCudaBackend({ precision }), { skip: reason, precision });
}
