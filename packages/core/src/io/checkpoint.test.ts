import { mkdtempSync, readFileSync, writeFileSync, copyFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixturesDir, loadFixture } from '../conformance/fixtures.js';
import { GPT2Error } from '../errors.js';
import { parseConfig } from '../model/config.js';
import { loadModelDir, saveModelDir } from '../node.js';
import { paramsFromSafetensors } from './checkpoint.js';
import { parseSafetensors, serializeSafetensors } from './safetensors.js';

const fx = (name: string, file: string) => join(fixturesDir(), name, file);
const header = (path: string) => {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  return JSON.parse(b.subarray(8, 8 + n).toString()) as Record<string, { dtype: string; shape: number[] }>;
};

describe('HF GPT-2 checkpoints', () => {
  it('reads the hub layout (no prefix, mask buffers) and the save_pretrained fp16 layout (prefix, no lm_head) alike', () => {
    const f32 = loadFixture('gpt2-tiny').params, f16 = loadFixture('gpt2-tiny-fp16').params;
    expect(f16.length).toBe(f32.length);
    let maxDiff = 0;
    for (let i = 0; i < f32.length; i++) maxDiff = Math.max(maxDiff, Math.abs(f32[i] - f16[i]) / (Math.abs(f32[i]) + 1e-3));
    expect(maxDiff).toBeLessThan(2e-3); // the same weights, rounded to half precision
  });

  it('saves what GPT2LMHeadModel.save_pretrained saves: same tensor names and shapes as the HF-written fixture', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gpt2-save-'));
    const f = loadFixture('gpt2-tiny');
    await saveModelDir(dir, f.config, f.params);
    const ours = header(join(dir, 'model.safetensors')), hf = header(fx('gpt2-tiny-fp16', 'model.safetensors'));
    const shapes = (h: typeof ours) => Object.fromEntries(Object.entries(h).filter(([k]) => k !== '__metadata__').map(([k, v]) => [k, v.shape]));
    expect(shapes(ours)).toEqual(shapes(hf));
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']); // no temporary files left behind
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const hfCfg = JSON.parse(readFileSync(fx('gpt2-tiny', 'config.json'), 'utf8'));
    for (const key of Object.keys(hfCfg).filter((k) => !k.endsWith('pdrop'))) expect(cfg[key], key).toEqual(hfCfg[key]);
    const back = await loadModelDir(dir);
    expect(Buffer.from(back.params.buffer).equals(Buffer.from(f.params.buffer))).toBe(true);
  });

  it('rejects a config that does not match the weights, naming the tensor', () => {
    const st = parseSafetensors(readFileSync(fx('gpt2-odd', 'model.safetensors')), 'odd/model.safetensors');
    const cfg = parseConfig(readFileSync(fx('gpt2-odd', 'config.json'), 'utf8'));
    expect(() => paramsFromSafetensors({ ...cfg, nPositions: 64 }, st)).toThrowError(
      /odd\/model\.safetensors: tensor 'wpe\.weight' has shape \[40,48\] but config\.json implies \[64,48\]/,
    );
    expect(() => paramsFromSafetensors({ ...cfg, nLayer: 4 }, st)).toThrowError(/has no tensor 'h\.3\.ln_1\.weight'/);
    expect(() => paramsFromSafetensors({ ...cfg, nLayer: 2 }, st)).toThrowError(/unexpected tensor 'h\.2\./);
    // sizes that would reserve gigabytes are refused by the header, before anything is allocated
    expect(() => paramsFromSafetensors({ ...cfg, vocabSize: 1 << 20, nEmbd: 2048, nHead: 16, nInner: 8192 }, st)).toThrowError(/tensor 'wte\.weight' has shape \[\d+,48\] but config\.json implies \[1048576,2048\]/);
  });

  it('rejects an untied lm_head and accepts a tied one', () => {
    const f = loadFixture('gpt2-odd');
    const st = parseSafetensors(readFileSync(fx('gpt2-odd', 'model.safetensors')));
    const tensors = [...st.tensors.keys()].map((name) => ({ name, shape: st.tensors.get(name)!.shape, data: st.float32(name) }));
    const wte = st.float32('wte.weight');
    const tied = serializeSafetensors([...tensors, { name: 'lm_head.weight', shape: [997, 48], data: wte }]);
    expect(paramsFromSafetensors(f.config, parseSafetensors(tied))).toEqual(f.params);
    const other = wte.map((x) => x + 1);
    const untied = serializeSafetensors([...tensors, { name: 'lm_head.weight', shape: [997, 48], data: other }]);
    expect(() => paramsFromSafetensors(f.config, parseSafetensors(untied))).toThrowError(/untied LM heads are not supported/);
  });

  it('explains a model directory with missing files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gpt2-missing-'));
    await expect(loadModelDir(join(dir, 'nope'))).rejects.toThrowError(/does not exist; pass a folder with config\.json/);
    await expect(loadModelDir(dir)).rejects.toThrowError(/config\.json does not exist/);
    copyFileSync(fx('gpt2-odd', 'config.json'), join(dir, 'config.json'));
    await expect(loadModelDir(dir)).rejects.toThrowError(/holds no model weights/);
    writeFileSync(join(dir, 'model.safetensors'), readFileSync(fx('gpt2-odd', 'model.safetensors')).subarray(0, 5000));
    await expect(loadModelDir(dir)).rejects.toThrowError(GPT2Error);
  });
});
