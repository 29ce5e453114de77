// Encoding text of any size in bounded memory: text arrives in pieces, and is cut only where
// GPT-2's pre-tokenizer can never join the two sides, so the ids equal encoding it whole.
import { isWhitespace } from './byte-level.js';
import type { EncodeOptions, Tokenizer } from './tokenizer.js';

/** Pending text past this size is cut at the last code point even without a safe boundary. */
const HARD_LIMIT = 64 << 20;

/**
 * The last index i where text may be cut: a single space between two non-whitespace characters
 * (no token ends in a space or continues past a non-space into one), or just after a newline
 * that follows a non-whitespace character and precedes one. -1 when there is none.
 */
export function safeCut(text: string): number {
  for (let i = text.length - 2; i >= 2; i--) {
    const c = text[i];
    if (c === ' ' && !isWhitespace(text[i - 1]) && !isWhitespace(text[i + 1])) return i;
    if (text[i - 1] === '\n' && !isWhitespace(text[i - 2]) && !isWhitespace(c)) return i;
  }
  return -1;
}

export interface ChunkProgress {
  /** characters consumed so far */
  chars: number;
  /** ids produced so far */
  tokens: number;
}

/** Encodes a stream of text pieces, yielding ids chunk by chunk; the concatenation equals encode(whole text). */
export async function* encodeChunks(
  tok: Tokenizer,
  pieces: AsyncIterable<string> | Iterable<string>,
  opts: EncodeOptions & { onProgress?: (p: ChunkProgress) => void } = {},
): AsyncGenerator<Int32Array> {
  let pending = '';
  const progress: ChunkProgress = { chars: 0, tokens: 0 };
  const emit = (text: string) => {
    const ids = tok.encode(text, opts);
    progress.chars += text.length;
    progress.tokens += ids.length;
    opts.onProgress?.(progress);
    return ids;
  };
  for await (const piece of pieces) {
    pending += piece;
    if (pending.length < 1 << 20) continue;
    let cut = safeCut(pending);
    if (cut < 0 && pending.length > HARD_LIMIT) {
      cut = pending.length - 1;
      if (/[\ud800-\udbff]/.test(pending[cut - 1])) cut--; // never split a surrogate pair
    }
    if (cut <= 0) continue;
    yield emit(pending.slice(0, cut));
    pending = pending.slice(cut);
  }
  if (pending.length > 0) yield emit(pending);
}
