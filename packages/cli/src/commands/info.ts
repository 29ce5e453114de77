// gpt2 info: which backends start here (and why the others do not), the machine, the versions.
import { cpus, totalmem } from 'node:os';
import { createRequire } from 'node:module';
import { registeredBackends, resolveBackend } from '@gpt2/core';
import { noGpuDevice } from '@gpt2/backend-webgpu';
import { registerAll } from '../backends.js';
import { hubOptionsFromEnv } from '../hub.js';

// the release's bundle defines the version (scripts/release.mjs); in the repository it is package.json's
declare const GPT2_VERSION: string | undefined;

export async function runInfo(f: { json?: boolean; verbose?: boolean }): Promise<void> {
  registerAll();
  const backends: { name: string; available: boolean; details?: Record<string, string>; reason?: string }[] = [];
  // no GPU here: Dawn is not loaded (its Vulkan probe prints on stderr) unless --verbose asks
  const noGpu = f.verbose ? undefined : await noGpuDevice();
  for (const name of registeredBackends()) {
    if (name === 'webgpu' && noGpu) {
      backends.push({ name, available: false, reason: `${noGpu} (gpt2 info --verbose loads it).` });
      continue;
    }
    try {
      const { backend } = await resolveBackend(name);
      backends.push({ name, available: true, details: backend.describe() });
      backend.dispose();
    } catch (err) {
      backends.push({ name, available: false, reason: (err as Error).message });
    }
  }
  let auto: string | undefined;
  try {
    const r = await resolveBackend('auto');
    auto = r.backend.name;
    r.backend.dispose();
  } catch {
    auto = undefined;
  }
  const req = createRequire(import.meta.url);
  const hub = hubOptionsFromEnv();
  const info = {
    version: typeof GPT2_VERSION === 'string' ? GPT2_VERSION : (req('../../package.json') as { version: string }).version,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpus: cpus().length,
    memoryGB: +(totalmem() / 2 ** 30).toFixed(1),
    auto,
    backends,
    hub: { endpoint: hub.endpoint, cache: hub.cacheDir, offline: hub.offline, token: hub.token ? 'set' : 'not set' },
  };
  if (f.json) {
    process.stdout.write(JSON.stringify(info, null, 2) + '\n');
    return;
  }
  const lines = [`gpt2.ts ${info.version} on Node ${info.node} (${info.platform}, ${info.cpus} CPUs, ${info.memoryGB} GB)`, 'backends (in auto order):'];
  for (const b of backends) {
    lines.push(b.available ? `  ${b.name}: available (${Object.entries(b.details!).map(([k, v]) => `${k}: ${v}`).join(', ')})` : `  ${b.name}: unavailable: ${b.reason}`);
  }
  lines.push(`auto picks: ${info.auto}`, `hub: ${info.hub.endpoint} (cache ${info.hub.cache}${info.hub.offline ? ', offline' : ''}, token ${info.hub.token})`);
  process.stdout.write(lines.join('\n') + '\n');
}
