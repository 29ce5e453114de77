// The whole conformance suite on the native cpu backend, with 2 threads and with 1. Where the addon
// or a BLAS is missing the suite skips with the reason, except where GPT2_EXPECT_CPU is set (CI
// installs g++ and OpenBLAS, so there a missing backend fails).
import { describe, expect, it } from 'vitest';
import { runConformance } from '@gpt2/core/conformance';
import { createCpuBackend } from '../dist/index.js';

let reason: string | undefined;
try {
  (await createCpuBackend()).dispose();
} catch (err) {
  reason = (err as Error).message;
}
if (reason && process.env.GPT2_EXPECT_CPU) {
  describe('cpu backend', () => it('starts (GPT2_EXPECT_CPU is set)', () => expect(reason).toBeUndefined()));
} else {
  runConformance('cpu, 2 threads', () => createCpuBackend({ threads: 2 }), { skip: reason });
  runConformance('cpu, 1 thread', () => createCpuBackend({ threads: 1 }), { skip: reason });
}

describe.skipIf(reason)('cpu backend memory', () => {
  it('an allocation past the machine ends in one sentence: bytes asked, what the run needs in all, what to lower', async () => {
    const { GPT2, GPT2Error } = await import('@gpt2/core');
    const { loadFixture } = await import('@gpt2/core/conformance');
    const f = loadFixture('gpt2-tiny');
    const be = await createCpuBackend({ threads: 1 });
    const model = new GPT2(be, f.config, f.params);
    const err = (() => {
      try {
        model.createCache(5_000_000);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(GPT2Error);
    expect(err!.message).toMatch(/^The cpu backend cannot allocate [\d.]+ GiB: .*; generating with this model at batch 5000000 and context \d+ needs about [\d.]+ GiB in all \(parameters .*, activations .*\): lower --batch-size/);
    model.dispose();
  });
});

describe('cpu backend build and load failures', () => {
  it('without a C++ compiler the build prints one line, succeeds, and leaves the reason for the backend', async () => {
    const { spawnSync } = await import('node:child_process');
    const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const out = mkdtempSync(join(tmpdir(), 'gpt2-cpu-build-'));
    const script = new URL('../scripts/build.mjs', import.meta.url).pathname;
    const r = spawnSync(process.execPath, [script, '--out', out], { env: { PATH: '/nonexistent' }, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('backend-cpu: not built: no C++ compiler was found when `pnpm build` ran (install g++: apt-get install g++), then rebuild');
    expect(readFileSync(join(out, 'not-built.txt'), 'utf8')).toMatch(/^no C\+\+ compiler/);
    rmSync(out, { recursive: true, force: true });
  });
});
