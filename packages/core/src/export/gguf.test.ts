// The GGUF export read back by @huggingface/gguf (an independent parser of the format), against the
// spec's rules and the fixture's weights: header and metadata llama.cpp's gpt2 architecture reads,
// tensor names, shapes (fastest dim first), types and 32-byte-aligned offsets, F32 data as the
// weights, Q8_0 blocks dequantized within half a step of them, and the tied head written twice.
// (llama.cpp itself loading the export is checked by hand and by scripts/llama-peer.mjs: see README.)
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { gguf } from '@huggingface/gguf';
import { loadFixture } from '../conformance/fixtures.js';
import { paramLayout, slices, type ParamName } from '../model/params.js';
import { gpt2Tokenizer } from '../node.js';
import { dequantizeQ8_0, f16Bits, f16Value, GGML_TYPE, ggufFile, quantizeQ8_0, Q8_0_BLOCK, type GgufQuant } from './gguf.js';

const root = mkdtempSync(join(tmpdir(), 'gpt2-gguf-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const f = loadFixture('gpt2-tiny');
const { tensors } = paramLayout(f.config);
const read = async (name: ParamName, layer: number) => {
  const o = slices(f.config, tensors[name])[layer];
  return f.params.slice(o, o + tensors[name].perLayer);
};

async function exported(quant: GgufQuant): Promise<{ path: string; bytes: Uint8Array }> {
  const parts: Uint8Array[] = [];
  for await (const c of ggufFile(f.config, await gpt2Tokenizer(), quant, 'gpt2-tiny', read)) parts.push(c.slice());
  const bytes = new Uint8Array(Buffer.concat(parts)), path = join(root, `tiny-${quant}.gguf`);
  writeFileSync(path, bytes);
  return { path, bytes };
}

describe('GGUF export', () => {
  it('f16 bits round to nearest even, subnormals and infinities included', () => {
    // 2^-25 and 3 * 2^-25 are ties between subnormals: to even (0 and 2); 0.75 * 2^-24 rounds up to the smallest
    expect([1, -2, 65504, 0.1, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 3 * 2 ** -26, 1e6, 0].map(f16Bits)).toEqual([0x3c00, 0xc000, 0x7bff, 0x2e66, 1, 0, 2, 1, 0x7c00, 0]);
    for (const x of [0.1, -3.25, 2 ** -20, 60000]) expect(Math.abs(f16Value(f16Bits(x)) - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -11);
  });

  it('Q8_0: a block of 32 as an fp16 max/127 and int8 rounded half away from zero, as ggml quantizes', () => {
    const x = Float32Array.from({ length: Q8_0_BLOCK }, (_, i) => (i === 0 ? 127 : i === 1 ? -2.5 : i === 2 ? 2.5 : i - 16));
    const q = quantizeQ8_0(x), v = new DataView(q.buffer), ints = new Int8Array(q.buffer, 2, Q8_0_BLOCK);
    expect(q.length).toBe(34);
    expect(v.getUint16(0, true)).toBe(0x3c00); // d = 127 / 127 = 1
    expect([ints[0], ints[1], ints[2], ints[3], ints[31]]).toEqual([127, -3, 3, -13, 15]);
    expect(dequantizeQ8_0(quantizeQ8_0(new Float32Array(Q8_0_BLOCK)), Q8_0_BLOCK).every((y) => y === 0)).toBe(true);
  });

  for (const quant of ['f32', 'q8_0'] as const) {
    it(`${quant}: what llama.cpp's gpt2 reads, parsed by @huggingface/gguf, holds the fixture's weights`, async () => {
      const { path, bytes } = await exported(quant);
      const r = await gguf(path, { allowLocalFile: true });
      const md = r.metadata as Record<string, unknown>, C = f.config.nEmbd, V = f.config.vocabSize, L = f.config.nLayer;
      expect(md).toMatchObject({
        version: 3, 'general.architecture': 'gpt2', 'general.file_type': quant === 'f32' ? 0 : 7,
        'gpt2.context_length': f.config.nPositions, 'gpt2.embedding_length': C, 'gpt2.feed_forward_length': f.config.nInner,
        'gpt2.block_count': L, 'gpt2.attention.head_count': f.config.nHead,
        'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': 'gpt-2', 'tokenizer.ggml.eos_token_id': 50256, 'tokenizer.ggml.add_bos_token': false,
      });
      expect(md['gpt2.attention.layer_norm_epsilon']).toBeCloseTo(1e-5, 10);
      const tok = await gpt2Tokenizer(), tokens = md['tokenizer.ggml.tokens'] as string[], types = md['tokenizer.ggml.token_type'] as number[];
      expect(tokens).toHaveLength(V);
      expect(tokens.slice(0, 300)).toEqual(tok.tokens.slice(0, 300));
      expect([tokens[50256], types[50256], types[0]]).toEqual(['<|endoftext|>', 3, 1]); // CONTROL, NORMAL
      expect((md['tokenizer.ggml.merges'] as string[]).slice(0, 2)).toEqual(tok.merges.slice(0, 2).map(([a, b]) => `${a} ${b}`));
      // tensors: llama.cpp's names, 4 + 12 per layer + ... in order, dims fastest first, aligned offsets
      expect(r.tensorInfos).toHaveLength(2 + 12 * L + 3);
      expect(Number(r.tensorDataOffset) % 32).toBe(0);
      const byName = new Map(r.tensorInfos.map((t) => [t.name, t]));
      const want: [string, ParamName, number, number[]][] = [
        ['token_embd.weight', 'wte', 0, [C, V]], ['output.weight', 'wte', 0, [C, V]], ['position_embd.weight', 'wpe', 0, [C, f.config.nPositions]],
        ['output_norm.bias', 'lnfb', 0, [C]],
      ];
      for (let l = 0; l < L; l++) {
        want.push([`blk.${l}.attn_qkv.weight`, 'qkvw', l, [C, 3 * C]], [`blk.${l}.attn_qkv.bias`, 'qkvb', l, [3 * C]], [`blk.${l}.attn_output.weight`, 'attprojw', l, [C, C]],
          [`blk.${l}.ffn_up.weight`, 'fcw', l, [C, f.config.nInner]], [`blk.${l}.ffn_down.weight`, 'fcprojw', l, [f.config.nInner, C]], [`blk.${l}.ffn_norm.weight`, 'ln2w', l, [C]]);
      }
      for (const [name, param, layer, shape] of want) {
        const t = byName.get(name)!;
        expect(t, name).toBeDefined();
        expect(t.shape.map(Number), name).toEqual(shape);
        expect(Number(t.offset) % 32, name).toBe(0);
        const n = shape.reduce((a, d) => a * d, 1), at = Number(r.tensorDataOffset + t.offset), ref = await read(param, layer);
        const q8 = quant === 'q8_0' && shape.length === 2 && name !== 'position_embd.weight';
        expect(t.dtype, name).toBe(q8 ? GGML_TYPE.Q8_0 : GGML_TYPE.F32);
        if (!q8) {
          const got = new Float32Array(bytes.slice(at, at + n * 4).buffer);
          expect(got.findIndex((x, i) => x !== ref[i]), name).toBe(-1);
          continue;
        }
        // half a step, and the fp16 rounding of the step times 127 at most
        const back = dequantizeQ8_0(bytes.subarray(at, at + (n / 32) * 34), n);
        let worst = 0;
        for (let b = 0; b < n / 32; b++) {
          const block = ref.subarray(b * 32, b * 32 + 32), step = Math.max(...block.map(Math.abs)) / 127;
          for (let i = 0; i < 32; i++) worst = Math.max(worst, Math.abs(back[b * 32 + i] - block[i]) / (step * (0.5 + 127 * 2 ** -11)));
        }
        expect(worst, name).toBeLessThanOrEqual(1);
      }
      expect(bytes.length).toBe(Number(r.tensorDataOffset + byName.get('output.weight')!.offset) + (quant === 'f32' ? V * C * 4 : (V * C / 32) * 34));
    });
  }
});
