import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { get_encoding } from 'tiktoken';
import { parseSafetensors } from '@gpt2/core';
import { FIXTURES, gpt2 } from './test/cli.js';

const ref = parseSafetensors(readFileSync(join(FIXTURES, 'gpt2-tiny/reference.safetensors')));

describe('gpt2 CLI', () => {
  // webgpu only where an adapter exists (SwiftShader in CI: slow, about 40 s)
  const backends = ['cpu', 'wasm', 'reference', ...(process.env.VK_ICD_FILENAMES || process.env.GPT2_EXPECT_WEBGPU ? ['webgpu'] : [])];
  it.each(backends)('generate --backend %s: greedy tokens from "The meaning of life is" equal the fixture', async (backend) => {
    const r = await gpt2(['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--prompt', 'The meaning of life is', '--temperature', '0', '--max-new-tokens', '24', '--no-stop-at-eos', '--json', '--backend', backend]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.samples[0].tokens).toEqual([...ref.int32('greedy.tokens')]);
    expect(out.tokensPerSecond).toBeGreaterThan(0);
  }, 600_000);

  it('generate --backend reference --precision f16 (emulated): greedy tokens still equal the fixture', async () => {
    const r = await gpt2(['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--prompt', 'The meaning of life is', '--temperature', '0', '--max-new-tokens', '24', '--no-stop-at-eos', '--json', '--backend', 'reference', '--precision', 'f16']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).samples[0].tokens).toEqual([...ref.int32('greedy.tokens')]);
  });

  // int8 weights move gpt2-tiny's logits by at most 0.05 (core's int8.test.ts), below the fixture's smallest top-2 gap of 0.19
  it.each(['cpu', 'wasm', 'reference'])('generate --quantize int8 --backend %s: greedy tokens still equal the float64 fp32 reference', async (backend) => {
    const r = await gpt2(['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--prompt', 'The meaning of life is', '--temperature', '0', '--max-new-tokens', '24', '--no-stop-at-eos', '--json', '--backend', backend, '--quantize', 'int8']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).samples[0].tokens).toEqual([...ref.int32('greedy.tokens')]);
  });

  it('eval --quantize int8: loss within 1% of fp32 on the same text, and says which weights it used', async () => {
    const args = ['eval', '--model', join(FIXTURES, 'gpt2-tiny'), '--data', join(FIXTURES, 'README.md'), '--backend', 'cpu', '--json'];
    const fp32 = JSON.parse((await gpt2(args)).stdout), int8 = await gpt2([...args, '--quantize', 'int8']);
    expect(int8.code, int8.stderr).toBe(0);
    const q = JSON.parse(int8.stdout);
    expect([fp32.weights, q.weights, q.tokens]).toEqual(['fp32', 'int8', fp32.tokens]);
    expect(Math.abs(q.loss - fp32.loss) / fp32.loss).toBeLessThan(0.01);
    expect(q.loss).not.toBe(fp32.loss); // the weights really were int8
  });

  it('generate: the same seed gives the same sampled text on cpu, wasm and reference', async () => {
    const args = ['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--prompt', 'Once upon a time', '--temperature', '1', '--top-k', '50', '--max-new-tokens', '16', '--nsamples', '2', '--seed', '7', '--no-stop-at-eos', '--json'];
    const [cpu, wasm, reference] = await Promise.all(['cpu', 'wasm', 'reference'].map(async (b) => JSON.parse((await gpt2([...args, '--backend', b])).stdout)));
    expect(cpu.samples).toEqual(reference.samples);
    expect(wasm.samples).toEqual(reference.samples);
  });

  it('generate: streams text, several samples with a delimiter, and the same seed repeats', async () => {
    const args = ['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--prompt', 'Hello', '--max-new-tokens', '8', '--nsamples', '3', '--seed', '42', '--no-stop-at-eos'];
    const a = await gpt2(args), b = await gpt2(args);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout.split('====================').length).toBe(4);
    expect(a.stderr).toMatch(/tokens\/s on cpu, seed 42/);
  });

  it('tokenize: ids equal tiktoken r50k_base', async () => {
    const text = "Hello there — it's 2026! 中文 🤷🏽‍♀️";
    const r = await gpt2(['tokenize', '--model', join(FIXTURES, 'gpt2-tiny'), '--text', text, '--json']);
    const enc = get_encoding('r50k_base');
    expect(JSON.parse(r.stdout)).toEqual({ ids: [...enc.encode_ordinary(text)], count: enc.encode_ordinary(text).length });
    enc.free();
  });

  it("eval: loss of a text that fits equals HF's labels=ids loss computed from the reference logits", async () => {
    const inputs = ref.int32('inputs').subarray(0, 16), targets = ref.int32('targets').subarray(0, 16);
    const ids = [...inputs, targets[15]];
    const enc = get_encoding('r50k_base');
    const text = new TextDecoder().decode(enc.decode(Uint32Array.from(ids)));
    expect([...enc.encode_ordinary(text)]).toEqual(ids); // the text tokenizes back to the same ids
    enc.free();
    // float64 cross-entropy of the reference logits, row 0
    const logits = ref.float32('logits'), V = 50257;
    let sum = 0;
    for (let t = 0; t < 16; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      const max = Math.max(...row);
      let z = 0;
      for (const x of row) z += Math.exp(x - max);
      sum += Math.log(z) + max - row[targets[t]];
    }
    const dir = (await import('node:fs')).mkdtempSync(join((await import('node:os')).tmpdir(), 'eval-'));
    (await import('node:fs')).writeFileSync(join(dir, 'text.txt'), text);
    const r = await gpt2(['eval', '--model', join(FIXTURES, 'gpt2-tiny'), '--data', join(dir, 'text.txt'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokens).toBe(16);
    expect(Math.abs(out.loss - sum / 16)).toBeLessThan(1e-5);
    expect(out.perplexity).toBeCloseTo(Math.exp(out.loss), 6);
  });

  it.each(['cpu', 'wasm'])('eval --task hellaswag --backend %s: acc and acc_norm of float64 PyTorch (scripts/hellaswag_reference.py); bad items in one sentence', async (backend) => {
    const hs = JSON.parse(readFileSync(join(FIXTURES, 'hellaswag/reference.json'), 'utf8'));
    const args = ['eval', '--model', join(FIXTURES, 'gpt2-tiny'), '--task', 'hellaswag', '--backend', backend];
    const r = await gpt2([...args, '--data', join(FIXTURES, 'hellaswag/items.jsonl'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ task: 'hellaswag', n: hs.n, acc: hs.acc, acc_norm: hs.acc_norm, weights: 'fp32' });
    const two = await gpt2([...args, '--data', join(FIXTURES, 'hellaswag/items.jsonl'), '--limit', '2']);
    expect(two.stdout).toMatch(/^hellaswag: acc [\d.]+ {2}acc_norm [\d.]+ {2}\(2 items, /);
    expect(two.stderr).toMatch(/hellaswag 2\/2 \| acc_norm [\d.]+ \| ETA 0s/);
    const bad = await gpt2([...args, '--data', join(FIXTURES, 'README.md')]);
    expect([bad.code, bad.stderr.trim()]).toEqual([1, expect.stringMatching(/^error: .*README\.md line 1 is not JSON; each line holds one item/)]);
  });

  it('cpu without a BLAS: info says why, auto moves on, --backend cpu ends in one sentence', async () => {
    const env = { GPT2_BLAS: '/nonexistent/libopenblas.so.0' };
    const info = await gpt2(['info', '--json'], { env });
    const cpu = JSON.parse(info.stdout).backends.find((b: { name: string }) => b.name === 'cpu');
    expect(cpu).toMatchObject({ available: false, reason: expect.stringMatching(/needs a BLAS: GPT2_BLAS names \/nonexistent\/libopenblas.so.0, which could not be loaded/) });
    expect(JSON.parse(info.stdout).auto).not.toBe('cpu');
    const r = await gpt2(['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--backend', 'cpu', '--max-new-tokens', '2'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: The cpu backend could not start: The native cpu backend needs a BLAS: .* or unset it\.\n$/);
    if (JSON.parse(info.stdout).auto !== 'wasm') return; // a machine with a GPU: auto runs on it
    // a newcomer's first line: the fast backend passed over and the one apt line; no Dawn chatter above it
    const a = await gpt2(['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--max-new-tokens', '2', '--seed', '1'], { env });
    expect(a.code, a.stderr).toBe(0);
    expect(a.stderr.split('\n')[0]).toMatch(/^note: running on wasm; the cpu backend \(about 3x faster\) did not start: The native cpu backend needs a BLAS: .*\. On Debian\/Ubuntu: apt-get install g\+\+ libopenblas0 libdnnl2, then pnpm build\.$/);
    expect(a.stderr).not.toMatch(/Vulkan|Dawn|XDG_RUNTIME_DIR/);
  });

  it('bench: train and generate print their JSON figures', async () => {
    const t = await gpt2(['bench', '--task', 'train', '--init', join(FIXTURES, 'gpt2-odd/config.json'), '--batch', '2', '--seq', '16', '--steps', '2', '--json']);
    expect(t.code, t.stderr).toBe(0);
    expect(JSON.parse(t.stdout)).toMatchObject({
      task: 'train', backend: 'cpu', batch: 2, seq: 16, msPerStep: expect.any(Number), tokensPerSecond: expect.any(Number), peakRssMB: expect.any(Number), predictedMB: expect.any(Number),
    });
    const g = await gpt2(['bench', '--task', 'generate', '--init', join(FIXTURES, 'gpt2-odd/config.json'), '--batch', '1', '--prompt-tokens', '8', '--new-tokens', '16', '--json']);
    expect(JSON.parse(g.stdout)).toMatchObject({ task: 'generate', prefillMs: expect.any(Number), msPerToken: expect.any(Number), tokensPerSecond: expect.any(Number) });
    const q = await gpt2(['bench', '--task', 'generate', '--quantize', 'int8', '--init', join(FIXTURES, 'gpt2-odd/config.json'), '--batch', '2', '--prompt-tokens', '8', '--new-tokens', '16', '--json']);
    expect(JSON.parse(q.stdout)).toMatchObject({ task: 'generate', weights: 'int8', batch: 2, tokensPerSecond: expect.any(Number) });
    expect(JSON.parse(q.stdout).plan.modelMB).toBeLessThanOrEqual(JSON.parse(g.stdout).plan.modelMB); // predictedMB adds the process's own RSS, which varies
  });

  it.each([
    [['generate', '--bogus'], 2, /^error: unknown option '--bogus'/],
    [['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--top-p', '0'], 2, /--top-p <x>' argument '0' is invalid/],
    [['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--backend', 'tpu'], 2, /Allowed choices are auto, cuda, webgpu, cpu, wasm, reference/],
    [['generate', '--model', './no/such/dir'], 1, /^error: Model directory \.\/no\/such\/dir does not exist/],
    [['generate', '--model', join(FIXTURES, 'gpt2-odd')], 1, /has no vocab\.json \+ merges\.txt .* add the tokenizer files/],
    [['tokenize', '--model', join(FIXTURES, 'gpt2-tiny')], 1, /^error: Give exactly one of --text or --file\./],
    [['bench', '--task', 'train', '--init', 'gpt3'], 1, /^error: Unknown model size 'gpt3'/],
    [['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--precision', 'fp8'], 2, /Allowed choices are fp32, tf32, bf16, f16/],
    [['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--backend', 'wasm', '--precision', 'bf16'], 1, /^error: The wasm backend could not start: The wasm backend offers --precision fp32, not bf16; tf32 runs on cuda, bf16 on cuda and on cpu \(with oneDNN\), f16 on webgpu\./],
    [['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--backend', 'reference', '--batch-size', '100000', '--nsamples', '100000'], 1, /^error: The reference backend cannot allocate 18\.72 GiB \(JavaScript refused a typed array of 5025700000 values\); generating with this model at batch 100000 and context 64 needs about [\d.]+ GiB in all .*: lower --batch-size or --max-new-tokens, or use a smaller model\.$/m],
    [['finetune', 'x.txt', '--quantize', 'int8'], 2, /int8 weights are for generate, eval and bench --task generate; training needs the fp32 weights \(drop --quantize\)\./],
    [['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--quantize', 'int4'], 2, /Allowed choices are int8/],
    [['generate', '--model', join(FIXTURES, 'gpt2-tiny'), '--quantize', 'int8', '--precision', 'bf16'], 1, /^error: --quantize int8 keeps fp32 arithmetic \(int8 weights, fp32 activations\); drop --precision bf16\./],
    [['bench', '--task', 'train', '--quantize', 'int8'], 1, /^error: --quantize int8 is for --task generate \(int8 weights only generate and evaluate\), not train\./],
  ])('bad input %j ends in one clear sentence and exit code %i', async (args, code, pattern) => {
    const r = await gpt2(args as string[]);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(pattern);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
