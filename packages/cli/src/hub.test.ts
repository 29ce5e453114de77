import { copyFileSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors } from '@gpt2/core';
import { loadModelDir, saveModelDir } from '@gpt2/core/node';
import { downloadModel, hubOptionsFromEnv, type HubOptions } from './hub.js';
import { FIXTURES, gpt2 } from './test/cli.js';
import { startHubServer, type HubServer } from './test/hub-server.js';

let hub: HubServer;
let sharded: string, binOnly: string;
beforeAll(async () => {
  // gpt2-tiny as transformers saves it past max_shard_size (shards + index), and as a repo with only pytorch_model.bin
  const tiny = await loadModelDir(join(FIXTURES, 'gpt2-tiny'));
  sharded = mkdtempSync(join(tmpdir(), 'hub-sharded-'));
  await saveModelDir(sharded, tiny.config, tiny.params, '4MB');
  for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(FIXTURES, 'gpt2-tiny', f), join(sharded, f));
  binOnly = mkdtempSync(join(tmpdir(), 'hub-bin-'));
  for (const f of ['config.json']) copyFileSync(join(FIXTURES, 'gpt2-odd', f), join(binOnly, f));
  copyFileSync(join(FIXTURES, 'torch-bin', 'gpt2-odd-f32.bin'), join(binOnly, 'pytorch_model.bin'));
  // like the real hub, where gpt2 now lives at openai-community/gpt2 behind a relative redirect
  hub = await startHubServer({ 'test-org/gpt2-tiny': join(FIXTURES, 'gpt2-tiny'), 'test-org/sharded': sharded, 'test-org/bin-only': binOnly }, { gpt2: 'test-org/gpt2-tiny' });
});
afterAll(() => hub.close());

const opts = (cacheDir: string, extra: Partial<HubOptions> = {}): HubOptions => ({ endpoint: hub.url, cacheDir, offline: false, ...extra });
const fixture = (f: string) => readFileSync(join(FIXTURES, 'gpt2-tiny', f));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('hub downloads into the standard Hugging Face cache', () => {
  it('downloads with progress into the huggingface_hub layout, verified, and reuses it', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'hf-cache-'));
    const progress: [string, number, number][] = [];
    const dir = await downloadModel('test-org/gpt2-tiny', opts(cache, { onProgress: (f, d, t) => progress.push([f, d, t]) }));
    const repo = join(cache, 'models--test-org--gpt2-tiny');
    expect(dir).toBe(join(repo, 'snapshots', 'a'.repeat(40)));
    expect(readFileSync(join(repo, 'refs', 'main'), 'utf8')).toBe('a'.repeat(40));
    for (const f of ['config.json', 'model.safetensors', 'vocab.json', 'merges.txt']) {
      expect(readFileSync(join(dir, f)).equals(fixture(f))).toBe(true);
      expect(lstatSync(join(dir, f)).isSymbolicLink()).toBe(true);
      expect(readlinkSync(join(dir, f))).toMatch(/^\.\.\/\.\.\/blobs\/[0-9a-f]{40,64}$/); // relative, like huggingface_hub
    }
    expect(existsSync(join(repo, 'blobs', sha256(fixture('model.safetensors'))))).toBe(true);
    const last = progress.filter(([f]) => f === 'model.safetensors').at(-1)!;
    expect(last[1]).toBe(last[2]);
    expect(last[2]).toBe(fixture('model.safetensors').length);

    const before = hub.requests.filter((r) => r.method === 'GET').length;
    expect(await downloadModel('test-org/gpt2-tiny', opts(cache))).toBe(dir);
    expect(hub.requests.filter((r) => r.method === 'GET').length).toBe(before); // nothing fetched again
    // offline: served from the cache without asking the server
    const asked = hub.requests.length;
    expect(await downloadModel('test-org/gpt2-tiny', opts(cache, { offline: true, endpoint: 'http://127.0.0.1:3' }))).toBe(dir);
    expect(hub.requests.length).toBe(asked);
  });

  it('downloads every shard a model.safetensors.index.json names, and a repo that has only pytorch_model.bin', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'hf-cache-'));
    const dir = await downloadModel('test-org/sharded', opts(cache));
    const shards = readdirSync(sharded).filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    expect(shards.length).toBeGreaterThan(1);
    for (const f of [...shards, 'model.safetensors.index.json']) expect(readFileSync(join(dir, f)).equals(readFileSync(join(sharded, f))), f).toBe(true);
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(false);
    const want = await loadModelDir(join(FIXTURES, 'gpt2-tiny'));
    expect(Buffer.from((await loadModelDir(dir)).params.buffer).equals(Buffer.from(want.params.buffer))).toBe(true);
    // a cached snapshot counts only with every shard: one removed is fetched again
    rmSync(join(dir, shards[0]));
    expect(await downloadModel('test-org/sharded', opts(cache))).toBe(dir);
    expect(existsSync(join(dir, shards[0]))).toBe(true);

    const bin = await downloadModel('test-org/bin-only', opts(cache));
    expect(readdirSync(bin).sort()).toEqual(['config.json', 'pytorch_model.bin']);
    expect(Buffer.from((await loadModelDir(bin)).params.buffer).equals(Buffer.from((await loadModelDir(join(FIXTURES, 'gpt2-odd'))).params.buffer))).toBe(true);
  });

  it('resumes a partial download with a Range request', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'hf-cache-'));
    const data = fixture('model.safetensors');
    const blobs = join(cache, 'models--test-org--gpt2-tiny', 'blobs');
    mkdirSync(blobs, { recursive: true });
    writeFileSync(join(blobs, `${sha256(data)}.incomplete`), data.subarray(0, 5_000_000));
    const dir = await downloadModel('test-org/gpt2-tiny', opts(cache));
    expect(readFileSync(join(dir, 'model.safetensors')).equals(data)).toBe(true);
    expect(hub.requests.some((r) => r.range === 'bytes=5000000-')).toBe(true);
  });

  it('rejects a corrupted download and keeps nothing of it', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'hf-cache-'));
    hub.corrupt.add('model.safetensors');
    try {
      await expect(downloadModel('test-org/gpt2-tiny', opts(cache))).rejects.toThrowError(/download of test-org\/gpt2-tiny\/model\.safetensors is corrupted \(checksum/);
      expect(existsSync(join(cache, 'models--test-org--gpt2-tiny', 'blobs', sha256(fixture('model.safetensors'))))).toBe(false);
    } finally {
      hub.corrupt.delete('model.safetensors');
    }
  });

  it('trusts no name from the server or the user: commits, ETags and revisions that would leave the cache are refused, nothing written', async () => {
    const { readdirSync } = await import('node:fs');
    const root = mkdtempSync(join(tmpdir(), 'hf-hostile-'));
    const cache = join(root, 'hub');
    const files = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String) : []);
    try {
      hub.hostile.commit = '../../../escaped';
      await expect(downloadModel('test-org/gpt2-tiny', opts(cache))).rejects.toThrowError(
        `The server at ${hub.url} named the commit '../../../escaped' for test-org/gpt2-tiny/config.json, which is not 40 hex digits; nothing was written (check HF_ENDPOINT).`,
      );
      hub.hostile.commit = undefined;
      hub.hostile.etag = '../../../../planted';
      await expect(downloadModel('test-org/gpt2-tiny', opts(cache))).rejects.toThrowError(
        `The server at ${hub.url} gave test-org/gpt2-tiny/config.json the ETag '../../../../planted', which is not a 40- or 64-hex-digit hash; nothing was written (check HF_ENDPOINT).`,
      );
    } finally {
      hub.hostile.commit = hub.hostile.etag = undefined;
    }
    for (const rev of ['../../escaped', 'a/../../b', '/etc', 'x@y']) {
      await expect(downloadModel(`test-org/gpt2-tiny@${rev}`, opts(cache))).rejects.toThrowError(/names the revision .*, which is not a branch, tag or commit name/);
    }
    expect(files(root)).toEqual([]); // nothing in or beside the cache
    // a branch with slashes (refs/pr/1) still works, its ref stored under refs/ as huggingface_hub does
    const dir = await downloadModel('test-org/gpt2-tiny@refs/pr/1', opts(cache));
    expect(readFileSync(join(cache, 'models--test-org--gpt2-tiny', 'refs', 'refs', 'pr', '1'), 'utf8')).toBe('a'.repeat(40));
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(true);
  });

  it('a stalled download resumes from the bytes on disk; one that keeps stalling ends in a sentence, its bytes kept', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'hf-cache-'));
    const data = fixture('model.safetensors');
    const progress: number[] = [];
    hub.stall.set('model.safetensors', { after: 3_000_000, times: 1 });
    const t0 = Date.now();
    const dir = await downloadModel('test-org/gpt2-tiny', opts(cache, { downloadTimeout: 0.3, onProgress: (f, d) => f === 'model.safetensors' && progress.push(d) }));
    expect(readFileSync(join(dir, 'model.safetensors')).equals(data)).toBe(true);
    expect(hub.requests.some((r) => r.range === 'bytes=3000000-')).toBe(true);
    expect(progress.every((d, i) => i === 0 || d >= progress[i - 1])).toBe(true); // the progress goes on from where it stopped
    expect(Date.now() - t0).toBeLessThan(5000);

    const cache2 = mkdtempSync(join(tmpdir(), 'hf-cache-'));
    hub.stall.set('model.safetensors', { after: 1000, times: 5 });
    await expect(downloadModel('test-org/gpt2-tiny', opts(cache2, { downloadTimeout: 0.2 }))).rejects.toThrowError(
      `Downloading test-org/gpt2-tiny/model.safetensors from ${new URL(hub.url).host} failed 5 times (no data for 0.2 s; HF_HUB_DOWNLOAD_TIMEOUT sets the limit); the bytes so far are kept: check the connection, then run the command again to resume.`,
    );
    hub.stall.delete('model.safetensors');
    const kept = readFileSync(join(cache2, 'models--test-org--gpt2-tiny', 'blobs', `${sha256(data)}.incomplete`));
    expect(kept.length).toBeGreaterThanOrEqual(1000);
    expect(kept.equals(data.subarray(0, kept.length))).toBe(true);
  });

  it('a hub that accepts the connection and says nothing: the cache serves, else one sentence after HF_HUB_ETAG_TIMEOUT', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'hf-cache-'));
    hub.silent = true;
    try {
      await expect(downloadModel('test-org/gpt2-tiny', opts(cache, { etagTimeout: 0.3 }))).rejects.toThrowError(
        `Cannot reach the Hugging Face hub at ${hub.url} (no answer within 0.3 s; HF_HUB_ETAG_TIMEOUT sets the limit); check the connection, or pass a local model directory.`,
      );
      hub.silent = false;
      const dir = await downloadModel('test-org/gpt2-tiny', opts(cache));
      hub.silent = true;
      expect(await downloadModel('test-org/gpt2-tiny', opts(cache, { etagTimeout: 0.3 }))).toBe(dir);
    } finally {
      hub.silent = false;
    }
  });

  it('explains offline-without-cache, an unreachable hub and a missing repo', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'hf-cache-'));
    await expect(downloadModel('gpt2', opts(cache, { offline: true }))).rejects.toThrowError(/gpt2 is not in the Hugging Face cache .* HF_HUB_OFFLINE is set; .*pass a local model directory/);
    await expect(downloadModel('gpt2', opts(cache, { endpoint: 'http://127.0.0.1:3' }))).rejects.toThrowError(/Cannot reach the Hugging Face hub at http:\/\/127\.0\.0\.1:3 \(ECONNREFUSED\)/);
    await expect(downloadModel('nobody/nothing', opts(cache))).rejects.toThrowError(/has no config\.json/);
  });

  it('reads HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_HUB_OFFLINE and HF_TOKEN', () => {
    expect(hubOptionsFromEnv({ HF_HOME: '/h', HF_ENDPOINT: 'http://x/', HF_HUB_OFFLINE: '1', HF_TOKEN: 't' })).toEqual({ endpoint: 'http://x', token: 't', cacheDir: '/h/hub', offline: true, etagTimeout: 10, downloadTimeout: 10 });
    expect(hubOptionsFromEnv({ HF_HUB_ETAG_TIMEOUT: '2.5', HF_HUB_DOWNLOAD_TIMEOUT: '30' })).toMatchObject({ etagTimeout: 2.5, downloadTimeout: 30 });
    expect(hubOptionsFromEnv({ HF_HOME: '/h', HF_HUB_CACHE: '/c' }).cacheDir).toBe('/c');
  });

  it('gpt2 generate --model <hub id> works through HF_ENDPOINT, and the model matches the fixture', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'hf-home-'));
    const r = await gpt2(['generate', '--model', 'gpt2', '--prompt', 'The meaning of life is', '--temperature', '0', '--max-new-tokens', '24', '--no-stop-at-eos', '--json'], { env: { HF_ENDPOINT: hub.url, HF_HOME: cache } });
    expect(r.code, r.stderr).toBe(0);
    const want = parseSafetensors(fixture('reference.safetensors')).int32('greedy.tokens');
    expect(JSON.parse(r.stdout).samples[0].tokens).toEqual([...want]);
  });
});
