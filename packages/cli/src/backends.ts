// The backends this CLI can run on, registered with core's resolver in 'auto' priority order
// (GPU backends first as they land, then wasm, then the reference cpu backend).
import { createCpuBackend, registerBackend, registeredBackends, resolveBackend, GPT2Error, type ResolvedBackend } from '@gpt2/core';
import { createCudaBackend } from '@gpt2/backend-cuda';
import { createWasmBackend } from '@gpt2/backend-wasm';
import { createWebGPUBackend } from '@gpt2/backend-webgpu';

export const BACKEND_CHOICES = ['auto', 'cuda', 'webgpu', 'wasm', 'cpu'];

let registered = false;

/** Registers every backend; `threads` (0 = all cores) goes to the wasm backend. */
export function registerAll(threads = 0): void {
  if (registered) return;
  registered = true;
  registerBackend('cuda', () => createCudaBackend(), 40);
  registerBackend('webgpu', ({ auto }) => createWebGPUBackend({ rejectSoftware: auto }), 30);
  registerBackend('wasm', () => createWasmBackend(threads > 0 ? { threads } : {}), 20);
  registerBackend('cpu', async () => createCpuBackend(), 10);
}

export async function openBackend(name: string, threads = 0): Promise<ResolvedBackend> {
  registerAll(threads);
  if (!registeredBackends().includes(name) && name !== 'auto') {
    throw new GPT2Error(`Unknown backend '${name}'; choose one of: ${BACKEND_CHOICES.join(', ')}.`);
  }
  return resolveBackend(name);
}
