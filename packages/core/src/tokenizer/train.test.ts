import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixturesDir } from '../conformance/fixtures.js';
import { BYTE_ORDER, BYTE_TO_CHAR, PRETOKENIZE } from './byte-level.js';
import { Tokenizer } from './tokenizer.js';
import { trainTokenizer } from './train.js';

const corpus = readFileSync(join(fixturesDir(), '../examples/shakespeare.txt'), 'utf8');

/** Textbook BPE training: recount every pair of every word for every merge. Slow, obviously right. */
function naiveMerges(text: string, merges: number): [string, string][] {
  const counts = new Map<string, number>();
  for (const m of text.matchAll(PRETOKENIZE)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  const id = new Map(BYTE_ORDER.map((b, i) => [BYTE_TO_CHAR[b], i]));
  const tokens = BYTE_ORDER.map((b) => BYTE_TO_CHAR[b]);
  let words = [...counts].map(([w, c]) => ({ syms: [...new TextEncoder().encode(w)].map((b) => id.get(BYTE_TO_CHAR[b])!), c }));
  const out: [string, string][] = [];
  while (out.length < merges) {
    const pairs = new Map<string, number>();
    for (const { syms, c } of words) for (let i = 0; i + 1 < syms.length; i++) pairs.set(`${syms[i]},${syms[i + 1]}`, (pairs.get(`${syms[i]},${syms[i + 1]}`) ?? 0) + c);
    let best: [number, number, number] | undefined;
    for (const [k, c] of pairs) {
      const [a, b] = k.split(',').map(Number);
      if (!best || c > best[0] || (c === best[0] && (a < best[1] || (a === best[1] && b < best[2])))) best = [c, a, b];
    }
    if (!best) break;
    const [, a, b] = best;
    const s = tokens[a] + tokens[b];
    let m = id.get(s);
    if (m === undefined) {
      m = tokens.length;
      tokens.push(s);
      id.set(s, m);
    }
    out.push([tokens[a], tokens[b]]);
    words = words.map(({ syms, c }) => {
      const n: number[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (syms[i] === a && syms[i + 1] === b) {
          n.push(m!);
          i++;
        } else n.push(syms[i]);
      }
      return { syms: n, c };
    });
  }
  return out;
}

describe('byte-level BPE training', () => {
  it('learns the same merges as a textbook implementation', () => {
    const text = corpus.slice(0, 20_000);
    const tok = trainTokenizer([text], { vocabSize: 256 + 200 + 1 });
    expect(tok.merges).toEqual(naiveMerges(text, 200));
  });

  it('is deterministic, hits the vocabulary size, and encodes losslessly and compactly', () => {
    const text = corpus.slice(0, 200_000);
    const phases: string[] = [];
    const a = trainTokenizer([text], { vocabSize: 2000, onProgress: (p) => phases.push(p) });
    const b = trainTokenizer([text], { vocabSize: 2000 });
    expect(a.vocabJson()).toBe(b.vocabJson());
    expect(a.mergesTxt()).toBe(b.mergesTxt());
    expect(a.vocabSize).toBe(2000);
    expect(a.eosId).toBe(1999);
    expect(phases).toContain('merge');
    const sample = corpus.slice(500_000, 520_000);
    const ids = a.encode(sample);
    expect(a.decode(ids)).toBe(sample);
    expect(ids.length).toBeLessThan(sample.length / 2.5); // a real compression, not bytes
  });

  it('writes vocab.json + merges.txt in GPT-2 file format that loads back identically', () => {
    const tok = trainTokenizer([corpus.slice(0, 50_000), 'doc two<|endoftext|>doc three'], { vocabSize: 600 });
    const merges = tok.mergesTxt();
    expect(merges.startsWith('#version: 0.2\n')).toBe(true);
    const vocab = JSON.parse(tok.vocabJson()) as Record<string, number>;
    expect(Object.values(vocab).sort((x, y) => x - y)).toEqual([...Array(600).keys()]); // dense ids
    expect(vocab['!']).toBe(0); // byte tokens in GPT-2's order, like its vocab.json
    expect(vocab['<|endoftext|>']).toBe(599);
    for (const line of merges.trim().split('\n').slice(1)) expect(vocab[line.replace(' ', '')]).toBeDefined();
    const back = Tokenizer.fromFiles(tok.vocabJson(), merges);
    const s = corpus.slice(90_000, 95_000) + '<|endoftext|>';
    expect([...back.encode(s, { specials: true })]).toEqual([...tok.encode(s, { specials: true })]);
  });

  it('refuses a vocabulary smaller than the byte alphabet', () => {
    expect(() => trainTokenizer(['abc'], { vocabSize: 100 })).toThrowError(/needs at least 257/);
  });
});
