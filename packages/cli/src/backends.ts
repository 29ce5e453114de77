// The backends this CLI can run on, registered with core's resolver in priority order.
import { createCpuBackend, registerBackend, registeredBackends, resolveBackend, GPT2Error, type ResolvedBackend } from '@gpt2/core';

let registered = false;

export function registerAll(): void {
  if (registered) return;
  registered = true;
  registerBackend('cpu', async () => createCpuBackend(), 10);
}

export const BACKEND_CHOICES = ['auto', 'cpu'];

export async function openBackend(name: string): Promise<ResolvedBackend> {
  registerAll();
  if (!registeredBackends().includes(name) && name !== 'auto') {
    throw new GPT2Error(`Unknown backend '${name}'; choose one of: ${BACKEND_CHOICES.join(', ')}.`);
  }
  return resolveBackend(name);
}
