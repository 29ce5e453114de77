// GPT-2's byte-level alphabet: every byte maps to a printable unicode character, so BPE tokens
// are strings and vocab.json is plain JSON (openai/gpt-2 encoder.py `bytes_to_unicode`).

/** The 256 bytes in GPT-2's order (printable ranges first): the first 256 ids of a byte-level vocab. */
export const BYTE_ORDER: number[] = (() => {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) bs.push(b);
  return bs;
})();

/** byte -> its character. */
export const BYTE_TO_CHAR: string[] = (() => {
  const out = new Array<string>(256);
  let n = 0;
  for (const b of BYTE_ORDER) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    out[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return out;
})();

/** character code -> byte, for decoding token strings. */
export const CHAR_TO_BYTE: Map<number, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c.charCodeAt(0), b]));

export function bytesToToken(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += BYTE_TO_CHAR[b];
  return s;
}

export function tokenToBytes(token: string): Uint8Array | undefined {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const b = CHAR_TO_BYTE.get(token.charCodeAt(i));
    if (b === undefined) return undefined;
    out[i] = b;
  }
  return out;
}

// GPT-2's pre-tokenizer (tiktoken r50k_base). \s and \S are spelled out as Unicode White_Space,
// as Rust's regex reads them: JS's \s adds U+FEFF and omits U+0085.
const WS = '\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
export const PRETOKENIZE = new RegExp(
  `'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`,
  'gu',
);

const WS_CHAR = new RegExp(`^[${WS}]$`);
export const isWhitespace = (ch: string): boolean => WS_CHAR.test(ch);
