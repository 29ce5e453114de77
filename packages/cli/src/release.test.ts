// pnpm release, then the release copied outside the repository (so no node_modules is above it)
// runs `selftest` on every backend that starts here and a greedy generate on the fixture.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors } from '@gpt2/core';
import { loadTokenizerDir } from '@gpt2/core/node';
import { readFileSync } from 'node:fs';
import { gpt2, ROOT } from './test/cli.js';

const platform = `${process.platform}-${process.arch}`;

describe('the release', () => {
  let dir: string, bin: string;
  beforeAll(() => {
    execFileSync(process.execPath, [join(ROOT, 'scripts/release.mjs')], { cwd: ROOT, stdio: 'pipe' });
    dir = mkdtempSync(join(tmpdir(), 'gpt2-release-'));
    cpSync(join(ROOT, 'release', `gpt2-${platform}`), dir, { recursive: true });
    bin = join(dir, 'gpt2.mjs');
  }, 300_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('has no node_modules above it', () => {
    for (let d = join(dir, '..'); ; d = join(d, '..')) {
      expect(existsSync(join(d, 'node_modules'))).toBe(false);
      if (d === join(d, '..')) break;
    }
  });

  it('selftest passes on every backend that starts here, cpu, wasm and reference among them', async () => {
    const r = await gpt2(['selftest', '--json'], { bin, cwd: tmpdir() });
    expect(r.code, r.stderr + r.stdout.slice(-2000)).toBe(0);
    const report = JSON.parse(r.stdout) as { backends: { backend: string; skipped?: string; results?: { passed: boolean }[] }[] };
    const ran = report.backends.filter((b) => b.results).map((b) => b.backend);
    expect(ran).toEqual(expect.arrayContaining(['cpu', 'wasm', 'reference', ...(process.env.GPT2_EXPECT_WEBGPU ? ['webgpu'] : [])]));
    for (const b of report.backends) if (b.results) expect(b.results.length, b.backend).toBeGreaterThan(20);
  }, 900_000);

  it('a backend that cannot start ends selftest in one sentence and exit 1', async () => {
    const r = await gpt2(['selftest', '--backend', 'cuda'], { bin, cwd: tmpdir() });
    if (r.code === 0) return; // a machine with an NVIDIA GPU
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: The cuda backend could not start: .*\.\n$/);
  });

  it('greedy generate on fixtures/gpt2-tiny gives the fixture tokens', async () => {
    const ref = parseSafetensors(readFileSync(join(ROOT, 'fixtures/gpt2-tiny/reference.safetensors')));
    const r = await gpt2(['generate', '--model', join(dir, 'fixtures/gpt2-tiny'), '--prompt', 'The meaning of life is', '--temperature', '0', '--max-new-tokens', '24', '--no-stop-at-eos', '--json'], { bin, cwd: tmpdir() });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).samples[0].tokens).toEqual([...ref.int32('greedy.tokens')]);
  });

  it('serve (fastify and prom-client bundled) answers a greedy completion with the fixture tokens, and SIGTERM exits 0', async () => {
    const ref = parseSafetensors(readFileSync(join(ROOT, 'fixtures/gpt2-tiny/reference.safetensors')));
    let url = '', completion: Promise<{ choices: { text: string }[] }> | undefined;
    const r = await gpt2(['serve', '--model', join(dir, 'fixtures/gpt2-tiny'), '--backend', 'reference', '--port', '0'], {
      bin, cwd: tmpdir(),
      onStderr: (chunk, kill) => {
        url ||= /listening on (\S+)/.exec(chunk)?.[1] ?? '';
        if (/^ready:/m.test(chunk)) {
          completion = fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'The meaning of life is', max_tokens: 24, temperature: 0, ignore_eos: true }) })
            .then((res) => res.json() as Promise<{ choices: { text: string }[] }>)
            .finally(() => kill('SIGTERM'));
        }
      },
    });
    expect(r.code, r.stderr).toBe(0);
    const tok = await loadTokenizerDir(join(ROOT, 'fixtures/gpt2-tiny'));
    expect((await completion!).choices[0].text).toBe(tok.decode(ref.int32('greedy.tokens')));
  });
});
