// The backends this CLI can run on, registered with core's resolver in 'auto' priority order:
// cuda -> webgpu (hardware adapters) -> cpu (native) -> wasm -> reference.
import { createReferenceBackend, registerBackend, registeredBackends, resolveBackend, unsupportedPrecision, useNativeDraw, GPT2Error, type Precision, type ResolvedBackend } from '@gpt2/core';
import { createCpuBackend, nativeDraw } from '@gpt2/backend-cpu';
import { createCudaBackend } from '@gpt2/backend-cuda';
import { createWasmBackend } from '@gpt2/backend-wasm';
import { createWebGPUBackend } from '@gpt2/backend-webgpu';

export const BACKEND_CHOICES = ['auto', 'cuda', 'webgpu', 'cpu', 'wasm', 'reference'];

let registered = false;

/**
 * Registers every backend; `threads` (0 = all cores) goes to the cpu and wasm backends. Reduced
 * precision: cuda offers tf32 and bf16, cpu bf16 (with oneDNN), webgpu f16; the reference backend only emulates them
 * (slowly), so it does so when chosen by name, never as `auto`'s fallback.
 */
export function registerAll(threads = 0): void {
  if (registered) return;
  registered = true;
  // sampling's draw through the cpu addon where it is built, whichever backend computes the logits: the same ids, faster
  useNativeDraw(nativeDraw());
  const t = threads > 0 ? { threads } : {};
  registerBackend('cuda', ({ precision }) => createCudaBackend({ precision }), 40);
  registerBackend('webgpu', ({ auto, precision }) => createWebGPUBackend({ rejectSoftware: auto, precision }), 30);
  registerBackend('cpu', ({ auto, precision }) => createCpuBackend({ ...t, precision, rejectSlowBlas: auto }), 25);
  registerBackend('wasm', ({ precision }) => createWasmBackend({ ...t, precision }), 20);
  registerBackend('reference', async ({ auto, precision }) => {
    if (auto && precision !== 'fp32') throw unsupportedPrecision('reference', precision, ['fp32']);
    return createReferenceBackend({ precision });
  }, 10);
}

export interface BackendFlags {
  backend: string;
  threads?: number;
  precision?: Precision;
}

export async function openBackend(f: BackendFlags): Promise<ResolvedBackend> {
  registerAll(f.threads ?? 0);
  if (!registeredBackends().includes(f.backend) && f.backend !== 'auto') {
    throw new GPT2Error(`Unknown backend '${f.backend}'; choose one of: ${BACKEND_CHOICES.join(', ')}.`);
  }
  const resolved = await resolveBackend(f.backend, { precision: f.precision });
  const cpu = resolved.failures.find((fl) => fl.name === 'cpu');
  if (cpu && (resolved.backend.name === 'wasm' || resolved.backend.name === 'reference')) {
    // the first line a newcomer sees: what makes it fast, in one apt line
    process.stderr.write(`note: running on ${resolved.backend.name}; the cpu backend (about 3x faster) did not start: ${cpu.reason.replace(/\.$/, '')}. On Debian/Ubuntu: apt-get install g++ libopenblas0 libdnnl2, then pnpm build.\n`);
  }
  return resolved;
}
