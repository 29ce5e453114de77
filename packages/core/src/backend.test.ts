import { describe, expect, it } from 'vitest';
import { registerBackend, resolveBackend, registeredBackends } from './backend.js';
import { createReferenceBackend } from './backends/reference/index.js';

describe('backend registry', () => {
  it("'auto' takes the highest priority that starts and keeps why the others did not", async () => {
    registerBackend('reference', async () => createReferenceBackend(), 10);
    registerBackend('broken-gpu', async () => {
      throw new Error('no adapter found');
    }, 30);
    expect(registeredBackends()).toEqual(['broken-gpu', 'reference']);
    const { backend, failures } = await resolveBackend('auto');
    expect(backend.name).toBe('reference');
    expect(failures).toEqual([{ name: 'broken-gpu', reason: 'no adapter found' }]);
    await expect(resolveBackend('broken-gpu')).rejects.toThrowError('The broken-gpu backend could not start: no adapter found');
    await expect(resolveBackend('tpu')).rejects.toThrowError("Unknown backend 'tpu'; choose one of: auto, broken-gpu, reference.");
  });
});
