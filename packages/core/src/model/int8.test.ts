import { describe, expect, it } from 'vitest';
import { createReferenceBackend } from '../backends/reference/index.js';
import { greedy, loadFixture } from '../conformance/fixtures.js';
import { GPT2 } from './gpt2.js';
import { dequantizeRows, int8Layout, int8RowBytes, quantizeRows } from './int8.js';
import { presetConfig } from './config.js';

describe('int8 weights', () => {
  it('quantizes each row symmetrically to max|row| / 127, rounding to nearest, padding rows to whole words', () => {
    const w = Float32Array.of(0.5, -1.27, 0.004, /**/ 0, 0, 0, /**/ 2.54, 1.27, -0.635);
    const { q, scale } = quantizeRows(w, 3, 3, int8RowBytes(3));
    expect(int8RowBytes(3)).toBe(4);
    expect([...scale]).toEqual([Math.fround(0.01), 1, Math.fround(0.02)]);
    expect([...q]).toEqual([50, -127, 0, 0, /**/ 0, 0, 0, 0, /**/ 127, 64, -32, 0]); // 63.5 rounds up, -31.75 to -32
    const back = dequantizeRows(q, scale, 3, 3, 4);
    for (let i = 0; i < w.length; i++) expect(Math.abs(back[i] - w[i])).toBeLessThanOrEqual(scale[Math.floor(i / 3)] / 2 + 1e-7);
  });

  it('lays every matrix of every layer at 256-byte boundaries', () => {
    const cfg = presetConfig('gpt2');
    const l = int8Layout(cfg);
    expect(l.matrices.qkvw).toHaveLength(12);
    expect(l.matrices.wte[0]).toMatchObject({ OUT: 50257, IN: 768 });
    for (const list of Object.values(l.matrices)) for (const m of list) expect([m.word % 64, m.scale % 64]).toEqual([0, 0]);
    // int8 matrices and their scales: about a quarter of the fp32 bytes of the same weights
    expect(l.words * 4).toBeLessThan(125e6);
  });

  it('stays close to fp32 on gpt2-tiny: logits, loss and greedy tokens against the float64 reference', async () => {
    const f = loadFixture('gpt2-tiny');
    const m = new GPT2(createReferenceBackend(), f.config, f.params, { weights: 'int8' });
    const [B, T] = f.ref.tensors.get('inputs')!.shape;
    const loss = (await m.forward(f.ref.int32('inputs'), B, T, f.ref.int32('targets')))!;
    const want = f.ref.float32('logits'), got = await m.logits();
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    const fp32Loss = f.ref.float32('loss')[0];
    const tokens = (await greedy(m, f.ref.int32('greedy.prompt'), 24)).map((s) => s.token);
    const fp32Tokens = [...f.ref.int32('greedy.tokens')];
    const agree = tokens.filter((t, i) => t === fp32Tokens[i]).length;
    let prefix = 0;
    while (prefix < 24 && tokens[prefix] === fp32Tokens[prefix]) prefix++;
    console.log(`gpt2-tiny int8 vs fp32: loss ${loss.toFixed(5)} vs ${fp32Loss.toFixed(5)}, worst logit difference ${worst.toFixed(4)}, greedy tokens agreeing ${agree} of 24 (first ${prefix} in a row)`);
    expect(Math.abs(loss - fp32Loss) / fp32Loss).toBeLessThan(0.01);
    expect(worst).toBeLessThan(0.1);
    expect(agree).toBeGreaterThanOrEqual(20);
  });

  it('generates and evaluates but refuses to train or hand back fp32 weights', async () => {
    const f = loadFixture('gpt2-odd');
    const m = new GPT2(createReferenceBackend(), f.config, f.params, { weights: 'int8' });
    const [B, T] = f.ref.tensors.get('inputs')!.shape;
    await m.forward(f.ref.int32('inputs'), B, T, f.ref.int32('targets'));
    expect(() => m.zeroGrad()).toThrow(/int8 weights, which only generate and evaluate/);
    await expect(m.forwardBackward(f.ref.int32('inputs'), B, T, f.ref.int32('targets'))).rejects.toThrow(/only generate and evaluate/);
    await expect(m.readParams()).rejects.toThrow(/only generate and evaluate/);
    // the fp32 buffer on the device holds no copy of the quantized matrices
    const fp32 = new GPT2(createReferenceBackend(), f.config, f.params);
    expect(m.bufferLength).toBeLessThan(fp32.bufferLength);
  });

  it('names the backends that have int8 kernels when one does not', () => {
    const f = loadFixture('gpt2-odd');
    const be = createReferenceBackend();
    const without = { ...be, name: 'cuda', kernels: { ...be.kernels, matmulInt8Forward: undefined } };
    expect(() => new GPT2(without, f.config, f.params, { weights: 'int8' })).toThrow(/The cuda backend has no int8 kernels; int8 weights run on the cpu, wasm, webgpu and reference backends/);
  });
});
