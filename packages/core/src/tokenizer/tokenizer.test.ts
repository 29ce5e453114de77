// Our GPT-2 tokenizer against two independent ones: tiktoken (r50k_base, the Rust original
// compiled to WASM) and gpt-tokenizer. Never against our own output.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { get_encoding, type Tiktoken } from 'tiktoken';
import { encode as gptTokEncode } from 'gpt-tokenizer/encoding/r50k_base';
import { fixturesDir } from '../conformance/fixtures.js';
import { gpt2Tokenizer } from '../node.js';
import { Rng } from '../sample/rng.js';
import { StreamDecoder, Tokenizer } from './tokenizer.js';
import { encodeChunks } from './chunks.js';
import { EDGE_CASES } from './edge-cases.js';

const shakespeare = readFileSync(join(fixturesDir(), '../examples/shakespeare.txt'), 'utf8');

/** Random strings drawn from every kind of character the pattern distinguishes. */
function fuzzStrings(count: number, seed: number): string[] {
  const rng = new Rng(seed);
  const pools = [
    'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ', '0123456789', " \t\n\r\u000b\u000c\u00a0\u0085\u3000\u2009\ufeff",
    "'sdmtlvre", '.,;:!?-()[]{}"/\\@#$%^&*_+=<>|~`', 'éèêëàâäôöûüçñßøåæœ', '中文日本語한국어', 'абвгдежзиклмн', '٠١٢٣٤٥', '\u0301\u0308\u200d\u200b',
    '\u0000\u0001\u001b\u007f', '😀👍🏽🌍👩‍💻🇫🇷',
  ].map((p) => [...p]);
  return Array.from({ length: count }, () => {
    const len = rng.int(40);
    let s = '';
    for (let i = 0; i < len; i++) {
      const pool = pools[rng.int(pools.length)];
      s += pool[rng.int(pool.length)];
    }
    return s;
  });
}

describe('GPT-2 tokenizer = tiktoken r50k_base', () => {
  let ours: Tokenizer;
  let tk: Tiktoken;
  beforeAll(async () => {
    ours = await gpt2Tokenizer();
    tk = get_encoding('r50k_base');
  });
  afterAll(() => tk.free());

  it('encodes all of Shakespeare identically to tiktoken and gpt-tokenizer', () => {
    const ids = [...ours.encode(shakespeare)];
    expect(ids).toEqual([...tk.encode_ordinary(shakespeare)]);
    expect(ids).toEqual(gptTokEncode(shakespeare, { disallowedSpecial: new Set() }));
    expect(ours.decode(ids)).toBe(shakespeare);
  });

  it.each(EDGE_CASES.map((s) => [JSON.stringify(s).slice(0, 60), s]))('edge case %s', (_, s) => {
    const ids = [...ours.encode(s)];
    expect(ids).toEqual([...tk.encode_ordinary(s)]);
    expect(ours.decode(ids)).toBe(s);
  });

  it('agrees on 3000 random strings mixing scripts, whitespace, digits, emoji and controls', () => {
    for (const s of fuzzStrings(3000, 11)) {
      const want = [...tk.encode_ordinary(s)];
      const got = [...ours.encode(s)];
      if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`disagree on ${JSON.stringify(s)}: ${got} vs ${want}`);
      expect(ours.decode(got)).toBe(new TextDecoder().decode(tk.decode(Uint32Array.from(want))));
    }
  });

  it('decodes arbitrary id sequences to the same text (split characters become U+FFFD)', () => {
    const rng = new Rng(3);
    for (let k = 0; k < 200; k++) {
      const ids = Array.from({ length: 1 + rng.int(8) }, () => rng.int(50256));
      expect(ours.decode(ids)).toBe(new TextDecoder().decode(tk.decode(Uint32Array.from(ids))));
    }
  });

  it('recognises <|endoftext|> only when asked, and can skip specials when decoding', () => {
    const s = 'The end.<|endoftext|>A new story';
    expect([...ours.encode(s, { specials: true })]).toEqual([...tk.encode(s, 'all')]);
    expect([...ours.encode(s)]).toEqual([...tk.encode_ordinary(s)]);
    expect(ours.encode(s, { specials: true })).toContain(50256);
    expect(ours.eosId).toBe(50256);
    expect(ours.decode(ours.encode(s, { specials: true }), { skipSpecials: true })).toBe('The end.A new story');
  });

  it('streams decoded text only in whole UTF-8 characters', () => {
    const s = 'Emoji 👩‍👩‍👧‍👦 and 中文 and café 🏳️‍🌈!';
    const ids = ours.encode(s);
    const dec = new StreamDecoder(ours);
    const pieces = [...ids].map((id) => dec.push(id));
    expect(pieces.join('') + dec.flush()).toBe(s);
    for (const p of pieces) expect(p).not.toContain('\ufffd');
    expect(pieces.some((p) => p === '')).toBe(true); // some ids end mid-character and wait
  });

  it('encodes a large text in chunks exactly as a whole, reporting progress', async () => {
    const text = shakespeare.repeat(3);
    const pieces = function* () {
      for (let i = 0; i < text.length; i += 77_777) yield text.slice(i, i + 77_777);
    };
    const seen: number[] = [];
    const parts: number[] = [];
    for await (const ids of encodeChunks(ours, pieces(), { onProgress: (p) => seen.push(p.chars) })) for (const id of ids) parts.push(id);
    expect(parts).toEqual([...tk.encode_ordinary(text)]);
    expect(seen.length).toBeGreaterThan(2);
    expect(seen.at(-1)).toBe(text.length);
  });

  it('loads an HF tokenizer.json (both merges spellings) with the same results', () => {
    const vocab = readFileSync(join(fixturesDir(), 'gpt2-tiny/vocab.json'), 'utf8');
    const merges = readFileSync(join(fixturesDir(), 'gpt2-tiny/merges.txt'), 'utf8').split('\n').slice(1).filter(Boolean);
    const vocabObj = JSON.parse(vocab);
    delete vocabObj['<|endoftext|>'];
    for (const spelling of [merges, merges.map((m) => m.split(' '))]) {
      const json = JSON.stringify({
        version: '1.0',
        added_tokens: [{ id: 50256, content: '<|endoftext|>', special: true }],
        pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
        model: { type: 'BPE', dropout: null, unk_token: null, vocab: vocabObj, merges: spelling },
      });
      const t = Tokenizer.fromTokenizerJson(json);
      const s = "Hello there, it's 2026 — 中文 🤷🏽‍♀️<|endoftext|>";
      expect([...t.encode(s, { specials: true })]).toEqual([...tk.encode(s, 'all')]);
    }
    expect(() => Tokenizer.fromTokenizerJson('{"model": {"type": "WordPiece"}}')).toThrowError(/does not hold a BPE model/);
  });

  it('rejects vocabularies and merges that do not belong together', () => {
    expect(() => Tokenizer.fromFiles('{"a": 0}', '')).toThrowError(/lacks the single-byte token/);
    const vocab = readFileSync(join(fixturesDir(), 'gpt2-tiny/vocab.json'), 'utf8');
    expect(() => Tokenizer.fromFiles(vocab, '#version: 0.2\nzz qq\n')).toThrowError(/Merge rule 1 \("zz qq"\) uses tokens missing/);
    expect(() => Tokenizer.fromFiles('{not json', '')).toThrowError(/not valid JSON/);
  });

  it('refuses malformed vocabularies naming the file, before they could load with another meaning', () => {
    const vocab = JSON.parse(readFileSync(join(fixturesDir(), 'gpt2-tiny/vocab.json'), 'utf8')) as Record<string, number>;
    const merges = readFileSync(join(fixturesDir(), 'gpt2-tiny/merges.txt'), 'utf8');
    const withIds = (f: (v: Record<string, unknown>) => void) => {
      const v: Record<string, unknown> = { ...vocab };
      f(v);
      return JSON.stringify(v);
    };
    expect(() => Tokenizer.fromFiles(withIds((v) => (v['!'] = '0')), merges)).toThrowError('vocab.json: token "!" has the id "0", not a non-negative integer; restore it from the original model.');
    expect(() => Tokenizer.fromFiles(withIds((v) => (v['"'] = 0)), merges)).toThrowError('vocab.json: tokens "!" and "\\"" share the id 0; ids must be unique.');
    expect(() => Tokenizer.fromFiles(withIds((v) => delete v['!']), merges)).toThrowError(/^vocab\.json: no token has the id 0, though 50256 tokens are listed; ids must run from 0 to 50255 without gaps\.$/);
    expect(() => Tokenizer.fromFiles(JSON.stringify(Object.keys(vocab)), merges)).toThrowError('vocab.json must be a JSON object mapping each token to its id (found an array); restore it from the original model.');
    // what HF writes keeps loading: merges without the #version line, CRLF line ends
    const plain = merges.split('\n').filter((l) => !l.startsWith('#version')).join('\r\n');
    expect(Tokenizer.fromFiles(JSON.stringify(vocab), plain).vocabSize).toBe(50257);
    // tokenizer.json: added tokens must not take another token's id or leave a gap; merges must be pairs
    const tj = (added: unknown[], m: unknown[] = []) =>
      JSON.stringify({ added_tokens: added, pre_tokenizer: { type: 'ByteLevel' }, model: { type: 'BPE', vocab, merges: m } });
    expect(Tokenizer.fromTokenizerJson(tj([{ id: 50256, content: '<|endoftext|>', special: true }])).vocabSize).toBe(50257);
    expect(() => Tokenizer.fromTokenizerJson(tj([{ id: 5, content: '<|pad|>' }]))).toThrowError('tokenizer.json: added token "<|pad|>" has id 5, which "&" already has; ids must be unique.');
    expect(() => Tokenizer.fromTokenizerJson(tj([{ id: 60000, content: '<|pad|>' }]))).toThrowError(/added token "<\|pad\|>" has id 60000, past the vocabulary of 50257 tokens/);
    expect(() => Tokenizer.fromTokenizerJson(tj([], ['a b c']))).toThrowError(/^tokenizer\.json: merge 1 is "a b c", not two tokens/);
  });
});
