import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gpt2Tokenizer } from '@gpt2/core/node';
import { expandPaths, invalidUtf8Offset, loadCorpus } from './corpus.js';

describe('corpus', () => {
  it('joins .txt, .jsonl and .csv documents with <|endoftext|> and caches the tokens', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corpus-'));
    mkdirSync(join(dir, 'data'));
    writeFileSync(join(dir, 'data/a.txt'), 'First file.<|endoftext|>Second doc.');
    writeFileSync(join(dir, 'data/b.jsonl'), '{"text": "Line one."}\n\n{"text": "Line, two.", "x": 1}\n');
    writeFileSync(join(dir, 'data/c.csv'), 'id,text\n1,"Quoted, with comma"\n2,Plain\n');
    writeFileSync(join(dir, 'data/ignored.bin'), 'xx');
    const tok = await gpt2Tokenizer();
    const o = { textField: 'text', specials: true, cacheDir: join(dir, 'cache') };
    const first = await loadCorpus([join(dir, 'data')], tok, o);
    expect(first.files.map((f) => f.split('/').pop())).toEqual(['a.txt', 'b.jsonl', 'c.csv']);
    const docs = ['First file.<|endoftext|>Second doc.', 'Line one.', 'Line, two.', 'Quoted, with comma', 'Plain'];
    const want = docs.flatMap((d) => [...tok.encode(d, { specials: true }), 50256]);
    expect([...first.tokens]).toEqual(want);
    expect(first.fromCache).toBe(false);
    const again = await loadCorpus([join(dir, 'data')], tok, o);
    expect(again.fromCache).toBe(true);
    expect([...again.tokens]).toEqual(want);
    const plain = await loadCorpus([join(dir, 'data/a.txt')], tok, { ...o, specials: false });
    expect([...plain.tokens]).toEqual([...tok.encode(docs[0]), 50256]); // <|endoftext|> read as text
  });

  it('expands globs and names a bad jsonl line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corpus-'));
    writeFileSync(join(dir, 'x1.txt'), 'a');
    writeFileSync(join(dir, 'x2.txt'), 'b');
    expect((await expandPaths([join(dir, 'x*.txt')])).length).toBe(2);
    writeFileSync(join(dir, 'bad.jsonl'), '{"text": "ok"}\n{"body": "no text"}\n');
    const tok = await gpt2Tokenizer();
    await expect(loadCorpus([join(dir, 'bad.jsonl')], tok, { textField: 'text', specials: true, cacheDir: join(dir, 'c') })).rejects.toThrowError(
      /bad\.jsonl line 2 has no string field 'text'; choose the field with --text-field/,
    );
  });

  it('finds the offset of invalid UTF-8', () => {
    expect(invalidUtf8Offset(new TextEncoder().encode('héllo 🤷'))).toBe(-1);
    expect(invalidUtf8Offset(Uint8Array.of(0x61, 0xc3))).toBe(1); // cut short
    expect(invalidUtf8Offset(Uint8Array.of(0x61, 0x62, 0xc0, 0x80))).toBe(2); // overlong
    expect(invalidUtf8Offset(Uint8Array.of(0xed, 0xa0, 0x80))).toBe(0); // surrogate
    expect(invalidUtf8Offset(Uint8Array.of(0x61, 0xff))).toBe(1);
  });
});
