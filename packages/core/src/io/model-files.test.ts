// Model files as users have them: any size (read by positioned reads, past 2 and 4 GiB), sharded
// under an index as transformers writes them, and pytorch_model.bin read without running its pickle.
import { copyFileSync, mkdirSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixturesDir, loadFixture } from '../conformance/fixtures.js';
import { fileSource, loadModelDir, saveModelDir } from '../node.js';
import { flatTensors, paramTensorsToWrite } from './checkpoint.js';
import { openSafetensors, parseSafetensors, serializeSafetensors } from './safetensors.js';
import { openTorchBin } from './torch-bin.js';

const fx = (...p: string[]) => join(fixturesDir(), ...p);
const odd = () => loadFixture('gpt2-odd');
const tmp = (what: string) => mkdtempSync(join(tmpdir(), `gpt2-${what}-`));

/** gpt2-odd's tensors as save_pretrained names them, in memory. */
async function oddTensors() {
  const f = odd();
  return Promise.all(paramTensorsToWrite(f.config, flatTensors(f.config, f.params)).map(async (t) => ({ name: t.name, shape: t.shape, data: (await t.data()) as Float32Array })));
}

/** A folder with gpt2-odd's config and the given files. */
function modelDir(files: Record<string, Uint8Array | string>): string {
  const dir = tmp('model');
  copyFileSync(fx('gpt2-odd', 'config.json'), join(dir, 'config.json'));
  for (const [n, d] of Object.entries(files)) writeFileSync(join(dir, n), d);
  return dir;
}

describe('sharded safetensors', () => {
  it('writes shards past --max-shard-size with the index transformers writes, and reads them back', async () => {
    const f = odd(), dir = tmp('shards');
    await saveModelDir(dir, f.config, f.params, '100KB');
    const files = readdirSync(dir).sort();
    const shards = files.filter((n) => n.endsWith('.safetensors'));
    expect(shards.length).toBeGreaterThan(2);
    shards.forEach((n, i) => expect(n).toBe(`model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`));
    expect(files).toContain('model.safetensors.index.json');
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    const all = await oddTensors();
    expect(Object.keys(index.weight_map).sort()).toEqual(all.map((t) => t.name).sort());
    expect(index.metadata.total_size).toBe(all.reduce((n, t) => n + t.data.byteLength, 0));
    for (const n of shards) {
      const st = parseSafetensors(readFileSync(join(dir, n)));
      const data = [...st.tensors.values()].reduce((s, t) => s + t.end - t.begin, 0);
      if (st.tensors.size > 1) expect(data, n).toBeLessThanOrEqual(100_000); // past the limit only as one tensor larger than it (wte), as transformers does
    }
    expect((await loadModelDir(dir)).params).toEqual(f.params);
  });

  it('reads shards grouped another way than ours (one per layer, in reverse), as another writer may', async () => {
    const all = await oddTensors();
    const group = (name: string) => (/\.h\.(\d+)\./.exec(name)?.[1] ?? 'rest');
    const groups = [...new Set(all.map((t) => group(t.name)))].reverse();
    const files: Record<string, Uint8Array | string> = {}, weightMap: Record<string, string> = {};
    groups.forEach((g, i) => {
      const file = `model-${i + 1}-of-${groups.length}.safetensors`;
      files[file] = serializeSafetensors(all.filter((t) => group(t.name) === g).reverse());
      for (const t of all) if (group(t.name) === g) weightMap[t.name] = file;
    });
    files['model.safetensors.index.json'] = JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap });
    expect((await loadModelDir(modelDir(files))).params).toEqual(odd().params);
  });

  it('refuses in one sentence: a missing shard, a truncated one, a tensor in two shards, an index naming a tensor its shard lacks, a path', async () => {
    const all = await oddTensors();
    const half = Math.floor(all.length / 2);
    const a = serializeSafetensors(all.slice(0, half)), b = serializeSafetensors(all.slice(half));
    const map = Object.fromEntries(all.map((t, i) => [t.name, i < half ? 'a.safetensors' : 'b.safetensors']));
    const index = JSON.stringify({ weight_map: map });
    await expect(loadModelDir(modelDir({ 'model.safetensors.index.json': index, 'a.safetensors': a }))).rejects.toThrow(/names the shard b\.safetensors, which is missing from .*; download the whole model again\./);
    await expect(loadModelDir(modelDir({ 'model.safetensors.index.json': index, 'a.safetensors': a, 'b.safetensors': b.subarray(0, b.length - 100) }))).rejects.toThrow(/b\.safetensors is not a valid safetensors file: tensor '.*' ends at byte \d+ but the data section is only \d+ bytes \(truncated\?\)/);
    const twice = serializeSafetensors([...all.slice(half), all[0]]);
    await expect(loadModelDir(modelDir({ 'model.safetensors.index.json': index, 'a.safetensors': a, 'b.safetensors': twice }))).rejects.toThrow(/The tensor 'transformer\.wte\.weight' is in both .*a\.safetensors and .*b\.safetensors/);
    const lacking = JSON.stringify({ weight_map: { ...map, 'transformer.h.9.ln_1.weight': 'b.safetensors' } });
    await expect(loadModelDir(modelDir({ 'model.safetensors.index.json': lacking, 'a.safetensors': a, 'b.safetensors': b }))).rejects.toThrow(/places 'transformer\.h\.9\.ln_1\.weight' in b\.safetensors, but .*b\.safetensors does not hold it/);
    const escape = JSON.stringify({ weight_map: { ...map, 'transformer.wte.weight': '../a.safetensors' } });
    await expect(loadModelDir(modelDir({ 'model.safetensors.index.json': escape, 'a.safetensors': a, 'b.safetensors': b }))).rejects.toThrow(/maps 'transformer\.wte\.weight' to "\.\.\/a\.safetensors", which is not a file name beside the index/);
  });

  it('a weights file or index that is a folder ends in a sentence naming it, not in EISDIR', async () => {
    for (const name of ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin']) {
      const dir = modelDir({});
      mkdirSync(join(dir, name));
      await expect(loadModelDir(dir), name).rejects.toThrow(new RegExp(`${name.replace(/\./g, '\\.')} is a folder, not a file`));
    }
  });

  it('refuses a file whose size disagrees with its header', async () => {
    const good = readFileSync(fx('gpt2-odd', 'model.safetensors'));
    const longer = new Uint8Array(good.length + 16);
    longer.set(good);
    await expect(loadModelDir(modelDir({ 'model.safetensors': longer }))).rejects.toThrow(/header describes \d+ bytes of data but the file holds \d+ after the header/);
  });
});

describe('files past 2 and 4 GiB', () => {
  it('reads tensors that lie past 4 GiB into the file, without reading the rest (a sparse file)', async () => {
    const f = odd(), all = await oddTensors();
    // a 4.5 GiB causal-mask buffer first (ignored, never read), then the weights
    const pad = 4.5 * 2 ** 30;
    const header: Record<string, unknown> = { 'transformer.h.0.attn.bias': { dtype: 'U8', shape: [pad], data_offsets: [0, pad] } };
    let off = pad;
    for (const t of all) {
      header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
      off += t.data.byteLength;
    }
    const json = Buffer.from(JSON.stringify(header));
    const dir = modelDir({}), path = join(dir, 'model.safetensors');
    const fd = openSync(path, 'w');
    try {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(json.length));
      writeSync(fd, len, 0, 8, 0);
      writeSync(fd, json, 0, json.length, 8);
      let p = 8 + json.length + pad;
      for (const t of all) {
        writeSync(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), 0, t.data.byteLength, p);
        p += t.data.byteLength;
      }
    } finally {
      closeSync(fd);
    }
    try {
      const st = await openSafetensors(await fileSource(path));
      expect(st.tensors.get('transformer.wte.weight')!.dtype).toBe('F32');
      expect((await loadModelDir(dir)).params).toEqual(f.params);
      truncateSync(path, 2 ** 32 + 10); // cut inside the padding: the header now runs past the file
      await expect(loadModelDir(dir)).rejects.toThrow(/ends at byte \d+ but the data section is only \d+ bytes \(truncated\?\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('pytorch_model.bin (written by PyTorch: scripts/bin_reference.py)', () => {
  const bin = (name: string) => fx('torch-bin', name);

  it('reads fp32 as the same weights as model.safetensors, from a folder holding only pytorch_model.bin', async () => {
    const dir = modelDir({ 'pytorch_model.bin': readFileSync(bin('gpt2-odd-f32.bin')) });
    expect((await loadModelDir(dir)).params).toEqual(odd().params);
  });

  it('reads fp16 and bf16 storages as the same values as PyTorch wrote into safetensors', async () => {
    for (const tag of ['f16', 'bf16']) {
      const fromBin = await openTorchBin(await fileSource(bin(`gpt2-odd-${tag}.bin`)));
      const st = parseSafetensors(readFileSync(bin(`gpt2-odd-${tag}.safetensors`)));
      expect(fromBin.tensors.get('transformer.h.0.mlp.c_fc.weight')!.dtype).toBe(tag.toUpperCase());
      for (const name of st.tensors.keys()) expect(Buffer.from((await fromBin.float32(name)).buffer).equals(Buffer.from(st.float32(name).buffer)), name).toBe(true);
      const a = await loadModelDir(modelDir({ 'pytorch_model.bin': readFileSync(bin(`gpt2-odd-${tag}.bin`)) }));
      const b = await loadModelDir(modelDir({ 'model.safetensors': readFileSync(bin(`gpt2-odd-${tag}.safetensors`)) }));
      expect(Buffer.from(a.params.buffer).equals(Buffer.from(b.params.buffer))).toBe(true);
    }
  });

  it('refuses a pickle that would run code, and runs none of it', async () => {
    const marker = '/tmp/gpt2-ts-pickle-ran';
    rmSync(marker, { force: true });
    await expect(loadModelDir(modelDir({ 'pytorch_model.bin': readFileSync(bin('evil.bin')) }))).rejects.toThrow(
      /pytorch_model\.bin's pickle names the Python global posix\.system, which a PyTorch state dict never does; it was not loaded \(it could run code on this machine\)\./,
    );
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses the pre-1.6 format and a truncated archive in one sentence', async () => {
    await expect(loadModelDir(modelDir({ 'pytorch_model.bin': readFileSync(bin('legacy.bin')) }))).rejects.toThrow(/is not a zip archive: it is a PyTorch file from before 1\.6 .*; re-save it with a current torch\.save, or use model\.safetensors\./);
    const b = readFileSync(bin('gpt2-odd-f32.bin'));
    await expect(loadModelDir(modelDir({ 'pytorch_model.bin': b.subarray(0, b.length - 2000) }))).rejects.toThrow(/is not a readable PyTorch checkpoint: its zip directory cannot be read/);
  });
});
