// pnpm bench:tokenizer — encode throughput of ours, tiktoken (WASM) and gpt-tokenizer on the
// same ~20 MB of examples/ text, measured in one run; then BPE training time. Prints JSON.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { get_encoding } from 'tiktoken';
import { encode as gptTokenizerEncode } from 'gpt-tokenizer/encoding/r50k_base';
import { fixturesDir } from '../conformance/fixtures.js';
import { gpt2Tokenizer } from '../node.js';
import { trainTokenizer } from '../tokenizer/train.js';

const examples = join(fixturesDir(), '../examples');
const base = readdirSync(examples).filter((f) => f.endsWith('.txt')).map((f) => readFileSync(join(examples, f), 'utf8')).join('\n');
const text = base.repeat(Math.ceil(20e6 / base.length));
const mb = Buffer.byteLength(text) / 1e6;

function measure(name: string, encode: (s: string) => ArrayLike<number>) {
  encode(base.slice(0, 200_000)); // warm up the JIT and any caches on a different slice
  const t0 = performance.now();
  const n = encode(text).length;
  const s = (performance.now() - t0) / 1000;
  return { name, seconds: +s.toFixed(3), mbPerSecond: +(mb / s).toFixed(2), tokensPerSecond: Math.round(n / s), tokens: n };
}

const ours = await gpt2Tokenizer();
const tk = get_encoding('r50k_base');
const results = [
  measure('gpt2.ts', (s) => ours.encode(s)),
  measure('tiktoken', (s) => tk.encode_ordinary(s)),
  measure('gpt-tokenizer', (s) => gptTokenizerEncode(s)),
];
tk.free();
const oneMb = base.slice(0, 1_000_000);
const t0 = performance.now();
trainTokenizer([oneMb], { vocabSize: 8192 });
const trainSeconds = (performance.now() - t0) / 1000;
console.log(JSON.stringify({
  task: 'tokenize', textMB: +mb.toFixed(2), results,
  fastest: results.reduce((a, b) => (a.mbPerSecond > b.mbPerSecond ? a : b)).name,
  bpeTraining: { corpusChars: oneMb.length, vocabSize: 8192, seconds: +trainSeconds.toFixed(2) },
}, null, 2));
