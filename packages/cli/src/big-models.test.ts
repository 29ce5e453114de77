// The memory plan refuses, before allocating, what cannot fit: checked on gpt2-xl's real shapes
// with a sparse model file (a real header, its 6.4 GB of data never written nor read).
import { mkdtempSync, openSync, closeSync, writeSync, ftruncateSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { configToJson, paramTensorsToWrite, presetConfig } from '@gpt2/core';
import { FIXTURES, ROOT, gpt2 } from './test/cli.js';

let xl: string, data: string;
beforeAll(() => {
  const cfg = presetConfig('gpt2-xl');
  xl = mkdtempSync(join(tmpdir(), 'gpt2-xl-sparse-'));
  writeFileSync(join(xl, 'config.json'), JSON.stringify(configToJson(cfg)));
  for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(FIXTURES, 'gpt2-tiny', f), join(xl, f));
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const t of paramTensorsToWrite(cfg, () => new Float32Array(0))) {
    const n = t.shape.reduce((a, d) => a * d, 1) * 4;
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  const json = Buffer.from(JSON.stringify(header)), len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(join(xl, 'model.safetensors'), 'w');
  writeSync(fd, len);
  writeSync(fd, json);
  ftruncateSync(fd, 8 + json.length + off); // sparse: 6.2 GiB of zeros that take no disk
  closeSync(fd);
  data = join(xl, 'data.txt');
  writeFileSync(data, 'To be, or not to be, that is the question. '.repeat(200));
});

describe('every GPT-2 size: the memory plan refuses what cannot fit, before allocating', () => {
  it('a full fine-tune of gpt2-xl on a 24 GB machine points to LoRA, with what LoRA needs', async () => {
    const r = await gpt2(['finetune', data, '--model', xl, '--backend', 'cpu', '--batch-size', '1', '--block-size', '1024', '--out', join(xl, 'run')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^(note: .*\n|backend: .*\n)*error: Training all the weights of this 1,557,611,200-parameter model at batch 1 x 1024 needs about 2\d\.\d GiB in all \(parameters 5\.8 GiB, gradients 5\.8 GiB, AdamW moments 11\.6 GiB, activations \d\.\d GiB\) and 0\.\d GiB to read or save the weights a tensor at a time, but this machine has \d+\.\d GiB available; train LoRA adapters instead \(--lora-r 8 needs about \d+\.\d GiB\), lower --batch-size or --block-size, or use a smaller model\.\n$/,
    );
  });

  it('gpt2-xl in fp32 on wasm points to int8 weights; a from-scratch gpt2-xl on wasm to a smaller shape', async () => {
    const g = await gpt2(['generate', '--model', xl, '--backend', 'wasm', '--prompt', 'Hi', '--max-new-tokens', '1']);
    expect(g.code).toBe(1);
    expect(g.stderr).toMatch(/error: Running this 1,557,611,200-parameter model needs about \d\.\d GiB .* but WebAssembly's memory stops at 4 GiB; load it with --quantize int8 \(a quarter of the weight bytes\), or use the cpu backend or a smaller model\.\n$/);
    const t = await gpt2(['train', data, '--init', 'gpt2-xl', '--backend', 'wasm', '--batch-size', '1', '--block-size', '64', '--out', join(xl, 'scratch')]);
    expect(t.code).toBe(1);
    expect(t.stderr).toMatch(/error: Training all the weights of this 1,557,611,200-parameter model at batch 1 x 64 needs about 2\d\.\d GiB .* but WebAssembly's memory stops at 4 GiB; lower --batch-size or --block-size, or use a smaller model\.\n$/);
  });
});

void ROOT;
