// The whole conformance suite on the native cpu backend: its products through the BLAS with 2
// threads and with 1, through oneDNN in fp32, and in bf16 at that mode's tolerances. Where the addon,
// a BLAS, oneDNN or a CPU with bf16 instructions is missing those suites skip with the reason,
// except where GPT2_EXPECT_CPU / GPT2_EXPECT_ONEDNN are set (CI installs g++, OpenBLAS and oneDNN,
// so there a missing library fails).
import { describe, expect, it } from 'vitest';
import { bf16CopyCases, runCases, runConformance } from '@gpt2/core/conformance';
import { createCpuBackend, type CpuBackendOptions } from '../dist/index.js';

async function why(opts: CpuBackendOptions): Promise<string | undefined> {
  try {
    (await createCpuBackend(opts)).dispose();
  } catch (err) {
    return (err as Error).message;
  }
}
const reason = await why({ gemm: 'blas' });
const noOnednn = reason ?? (await why({ gemm: 'onednn' }));
const noBf16 = noOnednn ?? (await why({ precision: 'bf16' }));
if (reason && process.env.GPT2_EXPECT_CPU) {
  describe('cpu backend', () => it('starts (GPT2_EXPECT_CPU is set)', () => expect(reason).toBeUndefined()));
} else {
  runConformance('cpu (BLAS), 2 threads', () => createCpuBackend({ threads: 2, gemm: 'blas' }), { skip: reason });
  runConformance('cpu (BLAS), 1 thread', () => createCpuBackend({ threads: 1, gemm: 'blas' }), { skip: reason });
}
if (noOnednn && process.env.GPT2_EXPECT_ONEDNN) {
  describe('cpu backend with oneDNN', () => it('loads oneDNN (GPT2_EXPECT_ONEDNN is set)', () => expect(noOnednn).toBeUndefined()));
} else {
  runConformance('cpu (oneDNN)', () => createCpuBackend({ threads: 2, gemm: 'onednn' }), { skip: noOnednn });
  runConformance('cpu', () => createCpuBackend({ threads: 2, precision: 'bf16' }), { precision: 'bf16', skip: noBf16 });
  runCases('cpu bf16 copies', () => createCpuBackend({ threads: 2, precision: 'bf16' }), bf16CopyCases(), noBf16);
}

describe.skipIf(reason)('cpu backend precision', () => {
  it('--precision bf16 without oneDNN says in one sentence what it needs and what to install', async () => {
    const { spawnSync } = await import('node:child_process');
    const index = new URL('../dist/index.js', import.meta.url).href;
    const code = `import(${JSON.stringify(index)}).then((m) => m.createCpuBackend({ precision: 'bf16' })).then(() => console.log('started'), (e) => console.log(e.message));`;
    // a oneDNN that cannot load (GPT2_ONEDNN names a missing file), and oneDNN turned off
    const missing = spawnSync(process.execPath, ['-e', code], { env: { ...process.env, GPT2_ONEDNN: '/nonexistent/libdnnl.so.2' }, encoding: 'utf8' });
    expect(missing.stdout.trim()).toBe('--precision bf16 on the cpu backend needs oneDNN on a CPU with AVX512-BF16 or AMX: GPT2_ONEDNN names /nonexistent/libdnnl.so.2, which could not be loaded; point it at libdnnl or unset it.');
    const off = spawnSync(process.execPath, ['-e', code], { env: { ...process.env, GPT2_CPU_GEMM: 'blas' }, encoding: 'utf8' });
    expect(off.stdout.trim()).toBe('--precision bf16 on the cpu backend needs oneDNN on a CPU with AVX512-BF16 or AMX: GPT2_CPU_GEMM=blas turns oneDNN off.');
    await expect(createCpuBackend({ precision: 'tf32' })).rejects.toThrow('The cpu backend offers --precision fp32 or bf16, not tf32');
  });
});

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

describe.skipIf(reason)('sampling through the addon', () => {
  it('its exponentials are Math.exp\'s, bit for bit, over millions of arguments of every range', async () => {
    const { nativeExp } = await import('../dist/index.js');
    const { Rng } = await import('@gpt2/core');
    const r = new Rng(5), N = 2_000_000, x = new Float64Array(N);
    // runs of eight alike (the vector path) and mixed (the scalar one): logit gaps, tiny, huge, subnormal results, +-Infinity, NaN
    for (let i = 0; i < N; i++) {
      const k = (i >> 3) % 7;
      x[i] = k === 0 ? -r.random() * 40 : k === 1 ? -r.random() * 900 : k === 2 ? (r.random() - 0.5) * 3 : k === 3 ? Math.fround(r.normal() * 4) - Math.fround(r.normal() * 9) : k === 4 ? (r.random() - 0.5) * 1e-7 : k === 5 ? -r.random() * 0.5 : [0, -0, Infinity, -Infinity, NaN, 709.79, -745.2, -708.5][i & 7];
    }
    const want = x.map(Math.exp), got = x.slice();
    nativeExp(got);
    let bad = -1;
    for (let i = 0; i < N && bad < 0; i++) if (!Object.is(got[i], want[i])) bad = i;
    expect(bad, bad >= 0 ? `exp(${x[bad]}): ${got[bad]}, Math.exp: ${want[bad]}` : '').toBe(-1);
  });
  it('draws the ids core\'s JavaScript draw does, after top-k and top-p or none', async () => {
    const { nativeDraw } = await import('../dist/index.js');
    const { Rng, drawJs, topK, topP } = await import('@gpt2/core');
    const native = nativeDraw()!, r = new Rng(9);
    for (let n = 0; n < 24; n++) {
      const row = Float32Array.from({ length: 50257 }, () => Math.fround(r.normal() * (1 + (n % 4))));
      for (const chain of [[], [topK(40)], [topP(0.9)]]) {
        const l = row.slice();
        for (const p of chain) p(l, [], 0);
        const a = new Rng(n), b = new Rng(n);
        for (let i = 0; i < 10; i++) expect(native(l, a.random())).toBe(drawJs(l, b));
      }
    }
    expect(native(new Float32Array([-Infinity, -Infinity]), 0.5)).toBe(drawJs(new Float32Array([-Infinity, -Infinity]), new Rng(1)));
  });
});
