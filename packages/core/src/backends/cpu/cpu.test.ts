import { runConformance } from '../../conformance/index.js';
import { createCpuBackend } from './index.js';

runConformance('cpu', async () => createCpuBackend());
// the emulated reduced-precision modes: the definition the tolerances in precision.ts come from
for (const precision of ['tf32', 'bf16', 'f16'] as const) {
  runConformance('cpu (emulated)', async () => createCpuBackend({ precision }), { precision });
}
