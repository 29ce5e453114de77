// GPT-2 byte-level BPE: text -> pre-tokens (PRETOKENIZE) -> UTF-8 bytes -> merges by rank.
// Matches tiktoken's r50k_base exactly; pieces are cached, so encoding is mostly map look-ups.
import { GPT2Error } from '../errors.js';
import { BYTE_TO_CHAR, PRETOKENIZE, tokenToBytes } from './byte-level.js';
import { Heap } from './heap.js';

export interface EncodeOptions {
  /**
   * Recognise special tokens such as `<|endoftext|>` in the text (true), or encode them as
   * plain text like tiktoken's encode_ordinary (false, the default).
   */
  specials?: boolean;
}

const CACHE_LIMIT = 1 << 20;
const textEncoder = new TextEncoder();

export class Tokenizer {
  /** id -> token string (byte-level characters, or the literal special). */
  readonly tokens: string[];
  readonly vocab: Map<string, number>;
  /** merges in rank order, as token-string pairs */
  readonly merges: [string, string][];
  readonly specials: Map<string, number>;
  /** id -> UTF-8 bytes */
  private readonly tokenBytes: Uint8Array[];
  private readonly byteIds: Int32Array; // byte -> id of its single-byte token
  private readonly pairRank = new Map<number, number>(); // a * 2^20 + b -> rank
  private readonly pairMerged = new Map<number, number>(); // a * 2^20 + b -> merged id
  private readonly cache = new Map<string, number | Int32Array>();
  private readonly specialPattern?: RegExp;

  constructor(vocab: Map<string, number>, merges: [string, string][], specials: string[] = ['<|endoftext|>']) {
    this.vocab = vocab;
    this.merges = merges;
    const size = Math.max(...vocab.values()) + 1;
    if (size > 1 << 20) throw new GPT2Error(`A vocabulary of ${size} tokens is too large (the limit is ${1 << 20}).`);
    this.tokens = new Array<string>(size);
    for (const [tok, id] of vocab) this.tokens[id] = tok;
    this.specials = new Map(specials.filter((s) => vocab.has(s)).map((s) => [s, vocab.get(s)!]));
    this.tokenBytes = this.tokens.map((t, id) => {
      if (t === undefined) return new Uint8Array(0);
      if (this.specials.has(t)) return textEncoder.encode(t);
      const b = tokenToBytes(t);
      if (!b) throw new GPT2Error(`Vocabulary token ${JSON.stringify(t)} (id ${id}) is not byte-level; only GPT-2-style byte-level BPE vocabularies are supported.`);
      return b;
    });
    this.byteIds = new Int32Array(256);
    for (let b = 0; b < 256; b++) {
      const id = vocab.get(BYTE_TO_CHAR[b]);
      if (id === undefined) throw new GPT2Error(`The vocabulary lacks the single-byte token for byte ${b}; it is not a byte-level BPE vocabulary.`);
      this.byteIds[b] = id;
    }
    merges.forEach(([a, b], rank) => {
      const ia = vocab.get(a), ib = vocab.get(b), m = vocab.get(a + b);
      if (ia === undefined || ib === undefined || m === undefined) {
        throw new GPT2Error(`Merge rule ${rank + 1} ("${a} ${b}") uses tokens missing from the vocabulary; vocab.json and merges.txt do not belong together.`);
      }
      const key = ia * 1048576 + ib;
      if (!this.pairRank.has(key)) {
        this.pairRank.set(key, rank);
        this.pairMerged.set(key, m);
      }
    });
    if (this.specials.size > 0) {
      const alternatives = [...this.specials.keys()].map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
      this.specialPattern = new RegExp(alternatives.join('|'), 'g');
    }
  }

  /** Parses vocab.json + merges.txt text (the files GPT2Tokenizer.save_pretrained writes). */
  static fromFiles(vocabJson: string, mergesTxt: string, source = 'vocab.json'): Tokenizer {
    let obj: Record<string, number>;
    try {
      obj = JSON.parse(vocabJson);
    } catch {
      throw new GPT2Error(`${source} is not valid JSON; restore it from the original model.`);
    }
    checkVocab(obj, source);
    const merges: [string, string][] = [];
    for (const line of mergesTxt.split('\n')) {
      if (line.startsWith('#version') || line.trim() === '') continue;
      const parts = line.replace(/\r$/, '').split(' ');
      if (parts.length !== 2) throw new GPT2Error(`merges.txt has a malformed line ${JSON.stringify(line)}; expected two tokens separated by a space.`);
      merges.push([parts[0], parts[1]]);
    }
    return new Tokenizer(new Map(Object.entries(obj)), merges);
  }

  /** Parses an HF tokenizer.json holding a byte-level BPE model. */
  static fromTokenizerJson(json: string, source = 'tokenizer.json'): Tokenizer {
    let t: {
      model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[] };
      pre_tokenizer?: { type?: string; pretokenizers?: { type?: string }[] } | null;
      added_tokens?: { id: number; content: string; special?: boolean }[];
    };
    try {
      t = JSON.parse(json);
    } catch {
      throw new GPT2Error(`${source} is not valid JSON; restore it from the original model.`);
    }
    if (t.model?.type !== 'BPE' || !t.model.vocab || !t.model.merges) {
      throw new GPT2Error(`${source} does not hold a BPE model (found ${t.model?.type ?? 'none'}); only GPT-2-style byte-level BPE is supported.`);
    }
    const pre = t.pre_tokenizer;
    const byteLevel = pre?.type === 'ByteLevel' || pre?.pretokenizers?.some((p) => p.type === 'ByteLevel');
    if (!byteLevel) throw new GPT2Error(`${source} does not use a ByteLevel pre-tokenizer; only GPT-2-style byte-level BPE is supported.`);
    checkVocab(t.model.vocab, `${source} (model.vocab)`);
    const vocab = new Map(Object.entries(t.model.vocab));
    const specials: string[] = [];
    const byId = new Map([...vocab].map(([tok, id]) => [id, tok]));
    for (const a of t.added_tokens ?? []) {
      if (typeof a?.content !== 'string' || !Number.isInteger(a.id) || a.id < 0) {
        throw new GPT2Error(`${source}: added_tokens holds ${JSON.stringify(a)}, not a token with a content string and a non-negative integer id; restore it from the original model.`);
      }
      const other = byId.get(a.id);
      if (other !== undefined && other !== a.content) throw new GPT2Error(`${source}: added token ${JSON.stringify(a.content)} has id ${a.id}, which ${JSON.stringify(other)} already has; ids must be unique.`);
      if (a.id > byId.size) throw new GPT2Error(`${source}: added token ${JSON.stringify(a.content)} has id ${a.id}, past the vocabulary of ${byId.size} tokens; ids must follow on without gaps.`);
      vocab.set(a.content, a.id);
      byId.set(a.id, a.content);
      if (a.special !== false) specials.push(a.content);
    }
    const merges = t.model.merges.map((m, i) => {
      const pair = typeof m === 'string' ? m.split(' ') : m;
      if (!Array.isArray(pair) || pair.length !== 2 || pair.some((x) => typeof x !== 'string')) {
        throw new GPT2Error(`${source}: merge ${i + 1} is ${JSON.stringify(m)}, not two tokens ("a b" or ["a", "b"]); restore it from the original model.`);
      }
      return pair as [string, string];
    });
    return new Tokenizer(vocab, merges, specials);
  }

  get vocabSize(): number {
    return this.tokens.length;
  }

  /** The id of `<|endoftext|>`, if the vocabulary has it. */
  get eosId(): number | undefined {
    return this.specials.get('<|endoftext|>');
  }

  encode(text: string, opts: EncodeOptions = {}): Int32Array {
    const out: number[] = [];
    if (opts.specials && this.specialPattern) {
      let last = 0;
      for (const m of text.matchAll(this.specialPattern)) {
        this.encodeOrdinary(text.slice(last, m.index), out);
        out.push(this.specials.get(m[0])!);
        last = m.index! + m[0].length;
      }
      this.encodeOrdinary(text.slice(last), out);
    } else {
      this.encodeOrdinary(text, out);
    }
    return Int32Array.from(out);
  }

  private encodeOrdinary(text: string, out: number[]): void {
    const re = new RegExp(PRETOKENIZE); // own lastIndex: safe under re-entrancy
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null) {
      const piece = m[0];
      let ids = this.cache.get(piece);
      if (ids === undefined) {
        ids = this.bpe(piece);
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(piece, ids);
      }
      if (typeof ids === 'number') out.push(ids);
      else for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    }
  }

  /** Byte-level BPE of one pre-token: repeatedly merge the lowest-ranked adjacent pair (leftmost on ties). */
  private bpe(piece: string): number | Int32Array {
    const bytes = textEncoder.encode(piece);
    const n = bytes.length;
    const ids = new Int32Array(n);
    for (let i = 0; i < n; i++) ids[i] = this.byteIds[bytes[i]];
    const merged = n <= 64 ? this.mergeShort(ids) : this.mergeLong(ids);
    return merged.length === 1 ? merged[0] : merged;
  }

  private rank(a: number, b: number): number {
    return this.pairRank.get(a * 1048576 + b) ?? Infinity;
  }

  // O(n^2) scan: fastest for the short pieces that make up real text
  private mergeShort(ids: Int32Array): Int32Array {
    let n = ids.length;
    const ranks = new Float64Array(Math.max(n - 1, 0));
    for (let i = 0; i + 1 < n; i++) ranks[i] = this.rank(ids[i], ids[i + 1]);
    while (n > 1) {
      let best = 0;
      for (let i = 1; i < n - 1; i++) if (ranks[i] < ranks[best]) best = i;
      if (ranks[best] === Infinity) break;
      ids[best] = this.pairMerged.get(ids[best] * 1048576 + ids[best + 1])!;
      ids.copyWithin(best + 1, best + 2, n);
      ranks.copyWithin(best, best + 1, n - 1);
      n--;
      if (best > 0) ranks[best - 1] = this.rank(ids[best - 1], ids[best]);
      if (best < n - 1) ranks[best] = this.rank(ids[best], ids[best + 1]);
    }
    return ids.slice(0, n);
  }

  // O(n log n) with a linked list and a heap of candidate pairs, for long runs (whitespace, digits)
  private mergeLong(ids: Int32Array): Int32Array {
    const n = ids.length;
    const next = new Int32Array(n), prev = new Int32Array(n), alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    type Entry = [rank: number, pos: number, left: number, right: number];
    const heap = new Heap<Entry>((x, y) => x[0] < y[0] || (x[0] === y[0] && x[1] < y[1]));
    const offer = (i: number) => {
      const j = next[i];
      if (j < 0) return;
      const r = this.rank(ids[i], ids[j]);
      if (r !== Infinity) heap.push([r, i, ids[i], ids[j]]);
    };
    for (let i = 0; i + 1 < n; i++) offer(i);
    for (let e = heap.pop(); e; e = heap.pop()) {
      const [, i, a, b] = e;
      const j = next[i];
      if (!alive[i] || j < 0 || ids[i] !== a || ids[j] !== b) continue; // stale entry
      ids[i] = this.pairMerged.get(a * 1048576 + b)!;
      alive[j] = 0;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      if (prev[i] >= 0) offer(prev[i]);
      offer(i);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(ids[i]);
    return Int32Array.from(out);
  }

  /** Bytes of a sequence of ids (ids outside the vocabulary are an error). */
  decodeBytes(ids: ArrayLike<number>, opts: { skipSpecials?: boolean } = {}): Uint8Array {
    let len = 0;
    for (let i = 0; i < ids.length; i++) len += this.bytesOf(ids[i], opts.skipSpecials).length;
    const out = new Uint8Array(len);
    let p = 0;
    for (let i = 0; i < ids.length; i++) {
      const b = this.bytesOf(ids[i], opts.skipSpecials);
      out.set(b, p);
      p += b.length;
    }
    return out;
  }

  /** Text of a sequence of ids; invalid UTF-8 becomes U+FFFD, as tiktoken's decode does. */
  decode(ids: ArrayLike<number>, opts: { skipSpecials?: boolean } = {}): string {
    return new TextDecoder().decode(this.decodeBytes(ids, opts));
  }

  isSpecial(id: number): boolean {
    const t = this.tokens[id];
    return t !== undefined && this.specials.has(t);
  }

  private bytesOf(id: number, skipSpecials?: boolean): Uint8Array {
    const b = this.tokenBytes[id];
    if (b === undefined || this.tokens[id] === undefined) throw new GPT2Error(`Token id ${id} is not in the tokenizer's vocabulary of ${this.vocabSize}.`);
    return skipSpecials && this.isSpecial(id) ? EMPTY : b;
  }

  /** vocab.json text, ids in order. */
  vocabJson(): string {
    const obj: Record<string, number> = {};
    this.tokens.forEach((t, id) => {
      if (t !== undefined) obj[t] = id;
    });
    return JSON.stringify(obj);
  }

  /** merges.txt text with the `#version: 0.2` header GPT-2's file has. */
  mergesTxt(): string {
    return '#version: 0.2\n' + this.merges.map(([a, b]) => `${a} ${b}`).join('\n') + '\n';
  }
}

const EMPTY = new Uint8Array(0);

/**
 * Turns ids into text as they arrive, holding back bytes until they form complete UTF-8
 * characters, so a stream of generated tokens never prints half a character.
 */
export class StreamDecoder {
  private readonly decoder = new TextDecoder('utf-8');
  constructor(private readonly tok: Tokenizer, private readonly opts: { skipSpecials?: boolean } = {}) {}

  /** Text completed by this id ('' when it ends mid-character). */
  push(id: number): string {
    return this.decoder.decode(this.tok.decodeBytes([id], this.opts), { stream: true });
  }

  /** Whatever is left (an incomplete character becomes U+FFFD). */
  flush(): string {
    return this.decoder.decode();
  }
}

/** A vocabulary must map each token to its own id, the ids running 0 .. N-1; says what is wrong, naming the file. */
function checkVocab(obj: unknown, source: string): asserts obj is Record<string, number> {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new GPT2Error(`${source} must be a JSON object mapping each token to its id (found ${Array.isArray(obj) ? 'an array' : typeof obj}); restore it from the original model.`);
  }
  const seen = new Map<number, string>();
  for (const [tok, id] of Object.entries(obj)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new GPT2Error(`${source}: token ${JSON.stringify(tok)} has the id ${JSON.stringify(id)}, not a non-negative integer; restore it from the original model.`);
    }
    const other = seen.get(id);
    if (other !== undefined) throw new GPT2Error(`${source}: tokens ${JSON.stringify(other)} and ${JSON.stringify(tok)} share the id ${id}; ids must be unique.`);
    seen.set(id, tok);
  }
  for (let id = 0; id < seen.size; id++) {
    if (!seen.has(id)) throw new GPT2Error(`${source}: no token has the id ${id}, though ${seen.size} tokens are listed; ids must run from 0 to ${seen.size - 1} without gaps.`);
  }
}
