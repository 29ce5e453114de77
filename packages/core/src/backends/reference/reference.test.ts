import { runConformance } from '../../conformance/index.js';
import { createReferenceBackend } from './index.js';

runConformance('reference', async () => createReferenceBackend());
// the emulated reduced-precision modes: the definition the tolerances in precision.ts come from
for (const precision of ['tf32', 'bf16', 'f16'] as const) {
  runConformance('reference (emulated)', async () => createReferenceBackend({ precision }), { precision });
}
