// Run by mpi.test.ts under mpirun: the float64 fixture's AdamW steps, data-parallel, on one backend.
// argv: backend (reference | cpu | wasm), zero stage (0 | 1), precision (fp32 | bf16; default fp32).
// Rank 0 prints "ok" when every rank passed.
import { createReferenceBackend, type Backend, type Precision } from '@gpt2/core';
import { dataParallelAdamW } from '@gpt2/core/conformance/data-parallel';
import { createCpuBackend } from '@gpt2/backend-cpu';
import { createWasmBackend } from '@gpt2/backend-wasm';
import { MpiCollective } from '@gpt2/mpi';

const [name, zero, precision = 'fp32'] = process.argv.slice(2) as [string, string, Precision?];
const comm = await MpiCollective.start({ timeoutSeconds: 60 });
const make: Record<string, () => Promise<Backend>> = {
  reference: async () => createReferenceBackend({ precision }),
  cpu: () => createCpuBackend({ threads: 1, precision }),
  wasm: () => createWasmBackend({ threads: 1 }),
};
const be = await make[name]();
try {
  await dataParallelAdamW(be, comm, { zero: zero === '1' ? 1 : 0 }, precision);
} catch (err) {
  process.stderr.write(`rank ${comm.rank}: ${(err as Error).message}\n`);
  comm.exit(1);
}
await comm.barrier();
if (comm.rank === 0) process.stdout.write(`ok ${name} zero=${zero} ${precision} ranks=${comm.size}\n`);
be.dispose();
comm.finalize();
