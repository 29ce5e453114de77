import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizerDir } from '@gpt2/core/node';
import { BIN, FIXTURES, gpt2, ROOT } from './test/cli.js';

let dir: string;
const corpus = (name: string) => join(FIXTURES, 'corpus', name);
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gpt2-prepare-'));
  writeFileSync(join(dir, 'docs.jsonl.gz'), gzipSync(readFileSync(corpus('docs.jsonl'))));
  writeFileSync(join(dir, 'play.txt'), readFileSync(join(ROOT, 'examples/shakespeare.txt'), 'utf8').slice(0, 20_000));
});

/** a shard's header and tokens */
function shard(path: string): { header: number[]; tokens: number[] } {
  const b = readFileSync(path), h = new Int32Array(b.buffer, b.byteOffset, 3);
  return { header: [...h], tokens: [...new Uint16Array(b.buffer.slice(b.byteOffset + 1024, b.byteOffset + b.byteLength))] };
}
// GPT-2's tokenizer (checked against tiktoken in core's tests), in this process
const ids = async (text: string) => [...(await loadTokenizerDir(join(FIXTURES, 'gpt2-tiny'))).encode(text)];

describe('gpt2 prepare', () => {
  it("writes llm.c's shards (the first for validation) holding each document's tokens and <|endoftext|>, the same with 1 or 2 workers; .gz and .zst read as the plain file", async () => {
    const inputs = [join(dir, 'play.txt'), corpus('docs.jsonl.zst'), join(dir, 'docs.jsonl.gz')];
    const one = await gpt2(['prepare', ...inputs, '--out', join(dir, 'one'), '--shard-size', '2000', '--workers', '1', '--json']);
    expect(one.code, one.stderr).toBe(0);
    const two = await gpt2(['prepare', ...inputs, '--out', join(dir, 'two'), '--shard-size', '2000', '--workers', '2', '--name', 'shk', '--json']);
    expect(two.code, two.stderr).toBe(0);
    const r = JSON.parse(one.stdout);
    // what the tokenizer gives each document, each followed by <|endoftext|>
    const docs = readFileSync(corpus('docs.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).text as string);
    const perDoc: number[] = [];
    for (const d of docs) perDoc.push(...(await ids(d)), 50256);
    const expected = [...(await ids(readFileSync(join(dir, 'play.txt'), 'utf8'))), 50256, ...perDoc, ...perDoc];
    expect(r.tokens).toBe(expected.length);
    const files = readdirSync(join(dir, 'one')).sort();
    expect(files[files.length - 1]).toBe('data_val_000000.bin');
    expect(files[0]).toBe('data_train_000001.bin');
    const order = [files[files.length - 1], ...files.slice(0, -1)];
    const all = order.flatMap((f, k) => {
      const s = shard(join(dir, 'one', f));
      expect(s.header, f).toEqual([20240520, 1, s.tokens.length]);
      if (k < order.length - 1) expect(s.tokens.length).toBe(2000);
      return s.tokens;
    });
    expect(all).toEqual(expected);
    expect(r.shards.map((s: { file: string }) => s.file)).toEqual(order);
    expect(existsSync(join(dir, 'one', '.prepare'))).toBe(false);
    // two workers: the same bytes, under another name
    for (const f of order) expect(readFileSync(join(dir, 'two', f.replace('data_', 'shk_'))).equals(readFileSync(join(dir, 'one', f))), f).toBe(true);
    // and training reads them
    const t = await gpt2(['train', join(dir, 'one', 'data_train_*.bin'), '--val-data', join(dir, 'one', 'data_val_*.bin'), '--init', join(FIXTURES, 'gpt2-tiny/config.json'),
      '--tokenizer', join(FIXTURES, 'gpt2-tiny'), '--steps', '2', '--batch-size', '2', '--block-size', '16', '--sample-every', '0', '--out', join(dir, 'run')]);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stderr).toMatch(new RegExp(`data: ${expected.length - 2000} tokens in ${order.length - 1} llm\\.c shard\\(s\\)`));
  });

  it('a killed run, started again, keeps the files it had tokenized and writes the same shards', async () => {
    // many files, one worker: kill it once the first file's tokens are in place
    const many = Array.from({ length: 30 }, (_, i) => {
      const p = join(dir, `part-${String(i).padStart(2, '0')}.txt`);
      writeFileSync(p, readFileSync(join(ROOT, 'examples/shakespeare.txt'), 'utf8').slice(i * 30_000, (i + 1) * 30_000));
      return p;
    });
    const args = ['prepare', ...many, '--out', join(dir, 'killed'), '--shard-size', '5000', '--workers', '1'];
    const child = spawn(process.execPath, [BIN, ...args], { stdio: 'ignore' });
    const first = join(dir, 'killed', '.prepare', '000000.tokens');
    while (!existsSync(first) && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const again = await gpt2(args);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/continuing: \d+ of 30 file\(s\) were tokenized by an earlier run/);
    const clean = await gpt2(['prepare', ...many, '--out', join(dir, 'clean'), '--shard-size', '5000', '--workers', '2']);
    expect(clean.code, clean.stderr).toBe(0);
    const names = readdirSync(join(dir, 'clean')).sort();
    expect(readdirSync(join(dir, 'killed')).sort()).toEqual(names);
    for (const f of names) expect(readFileSync(join(dir, 'killed', f)).equals(readFileSync(join(dir, 'clean', f))), f).toBe(true);
  });

  it('bad input ends in one sentence', async () => {
    writeFileSync(join(dir, 'broken.jsonl.gz'), gzipSync(Buffer.from('{"text": "a"}\n')).subarray(0, 12));
    writeFileSync(join(dir, 'latin1.txt'), Buffer.from([0x63, 0x61, 0x66, 0xe9]));
    for (const [args, pattern] of [
      [[join(dir, 'broken.jsonl.gz')], /broken\.jsonl\.gz could not be decompressed \(.*\); it is truncated or not gzip data/],
      [[join(dir, 'latin1.txt')], /latin1\.txt is not UTF-8 text: invalid byte 0xe9 at offset 3/],
      [[corpus('docs.jsonl'), '--text-field', 'body'], /docs\.jsonl line 1 has no string field 'body'; choose the field with --text-field/],
      [[join(dir, 'nothing-*.txt')], /No file matches/],
      [[corpus('docs.jsonl'), '--name', 'a/b'], /--name 'a\/b' must be letters, digits/],
    ] as const) {
      const r = await gpt2(['prepare', ...args, '--out', join(dir, 'bad')]);
      expect([r.code, r.stderr.trim()], args.join(' ')).toEqual([1, expect.stringMatching(new RegExp(`^error: .*${pattern.source}`, 'm'))]);
    }
    expect(readdirSync(join(dir, 'bad')).filter((f) => f.endsWith('.bin'))).toEqual([]);
  });
});
