// Training text from files, folders and globs (.txt/.md whole, .jsonl and .csv by a text field, each
// also as .gz or .zst), documents joined with <|endoftext|>, tokenized in bounded memory and cached as a binary file
// keyed by the files' contents and the tokenizer, so a second run starts at once.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Decompress } from 'fzstd';
import { parse as parseCsv } from 'csv-parse';
import { glob } from 'tinyglobby';
import { encodeChunks, GPT2Error, type Tokenizer } from '@gpt2/core';

const TEXT_EXT = new Set(['.txt', '.md', '.text', '']);
const DATA_EXT = new Set([...TEXT_EXT, '.jsonl', '.csv']);
const PACKED = ['.gz', '.zst'];

/** A file's kind of data (.jsonl, .csv, text) under any compression, and the compression. */
export function dataKind(file: string): { ext: string; packed?: string } {
  const packed = PACKED.find((p) => file.toLowerCase().endsWith(p));
  return { ext: extname(packed ? file.slice(0, -packed.length) : file).toLowerCase(), packed };
}

/** The bytes of a file, decompressed: Node's zlib for gzip, fzstd for Zstandard. */
async function* fileBytes(file: string): AsyncGenerator<Uint8Array> {
  const raw = createReadStream(file, { highWaterMark: 1 << 20 });
  const { packed } = dataKind(file);
  try {
    if (packed === '.gz') yield* raw.pipe(createGunzip());
    else if (packed === '.zst') {
      const out: Uint8Array[] = [];
      const z = new Decompress((d) => void out.push(d));
      for await (const chunk of raw) {
        z.push(chunk as Buffer);
        yield* out.splice(0);
      }
      z.push(new Uint8Array(0), true);
      yield* out.splice(0);
    } else yield* raw;
  } catch (err) {
    if (err instanceof GPT2Error || err instanceof TypeError) throw err;
    if (packed) throw new GPT2Error(`${file} could not be decompressed (${(err as Error).message}); it is truncated or not ${packed === '.gz' ? 'gzip' : 'Zstandard'} data.`);
    throw err;
  } finally {
    raw.destroy();
  }
}

export interface CorpusOptions {
  textField: string;
  /** Treat <|endoftext|> inside the text as a document boundary (default) or as plain text. */
  specials: boolean;
  cacheDir: string;
  onProgress?: (message: string, fraction: number) => void;
}

export interface Corpus {
  tokens: Uint16Array | Uint32Array;
  files: string[];
  fromCache: boolean;
}

/** Expands files, folders (recursively, data files only) and glob patterns into a sorted file list. */
export async function expandPaths(paths: string[]): Promise<string[]> {
  const out = new Set<string>();
  for (const p of paths) {
    if (existsSync(p) && statSync(p).isDirectory()) {
      const found = await glob('**/*', { cwd: p, absolute: false, onlyFiles: true, dot: false });
      for (const f of found.sort()) if (DATA_EXT.has(dataKind(f).ext)) out.add(join(p, f));
    } else if (existsSync(p)) {
      out.add(p);
    } else {
      const found = await glob(p, { onlyFiles: true });
      if (found.length === 0) throw new GPT2Error(`No file matches '${p}'; check the path.`);
      for (const f of found.sort()) out.add(f);
    }
  }
  if (out.size === 0) throw new GPT2Error(`No data files found in ${paths.join(', ')} (looked for .txt, .md, .jsonl and .csv, and those as .gz or .zst).`);
  return [...out];
}

/** Byte offset of the first invalid UTF-8 sequence, or -1. */
export function invalidUtf8Offset(b: Uint8Array): number {
  for (let i = 0; i < b.length; ) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    const n = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 0;
    if (n === 0 || i + n >= b.length) return i; // not a lead byte, or cut short by the end
    let cp = c & (0x7f >> (n + 1));
    for (let k = 1; k <= n; k++) {
      if ((b[i + k] & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (b[i + k] & 0x3f);
    }
    const min = [0, 0x80, 0x800, 0x10000][n];
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return -1;
}

/**
 * A whole file as UTF-8 text; a file that is not UTF-8, or not there, ends in one sentence naming it
 * (`fix` says what to do about the first, `missing` adds to the second).
 */
export async function readUtf8(file: string, fix = 'convert it first', missing?: string): Promise<string> {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(await readFile(file));
  } catch (err) {
    if (err instanceof TypeError) throw new GPT2Error(`${file} is not UTF-8 text; ${fix}.`);
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new GPT2Error(`${file} does not exist${missing ? `; ${missing}` : ''}.`);
    throw err;
  }
}

async function utf8Error(file: string): Promise<GPT2Error> {
  const bytes = await readFile(file);
  const at = invalidUtf8Offset(bytes);
  return new GPT2Error(
    `${file} is not UTF-8 text: invalid byte 0x${bytes[at]?.toString(16).padStart(2, '0')} at offset ${at}; convert it first (for example: iconv -f latin1 -t utf-8).`,
  );
}

/** The documents of one file, as text pieces; `null` marks the end of a document. */
async function* documents(file: string, textField: string): AsyncGenerator<string | null> {
  const { ext, packed } = dataKind(file);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const decode = async function* () {
    try {
      for await (const chunk of fileBytes(file)) yield decoder.decode(chunk, { stream: true });
      yield decoder.decode();
    } catch (err) {
      if (err instanceof TypeError) throw packed ? new GPT2Error(`${file} is not UTF-8 text once decompressed; convert it first.`) : await utf8Error(file);
      throw err;
    }
  };
  if (ext === '.jsonl') {
    let pending = '', line = 0;
    const parse = (text: string) => {
      line++;
      if (text.trim() === '') return undefined;
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(text);
      } catch {
        throw new GPT2Error(`${file} line ${line} is not valid JSON; every line of a .jsonl file must be one JSON object.`);
      }
      const v = obj?.[textField];
      if (typeof v !== 'string') throw new GPT2Error(`${file} line ${line} has no string field '${textField}'; choose the field with --text-field.`);
      return v;
    };
    for await (const piece of decode()) {
      pending += piece;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const l of lines) {
        const v = parse(l);
        if (v !== undefined) yield* [v, null];
      }
    }
    const v = parse(pending);
    if (v !== undefined) yield* [v, null];
  } else if (ext === '.csv') {
    const parser = Readable.from(decode()).pipe(parseCsv({ columns: true, bom: true, relax_column_count: true }));
    let row = 0;
    for await (const rec of parser as AsyncIterable<Record<string, string>>) {
      row++;
      const v = rec[textField];
      if (typeof v !== 'string') throw new GPT2Error(`${file} row ${row} has no column '${textField}'; choose the column with --text-field.`);
      yield* [v, null];
    }
  } else {
    yield* decode();
    yield null;
  }
}

/**
 * The tokens of one file's documents, each followed by <|endoftext|>, handed to `write` a piece at
 * a time (each document streams through the chunked encoder: bounded memory, exact ids); returns
 * how many tokens came from text.
 */
export async function tokenizeFile(file: string, tok: Tokenizer, o: { textField: string; specials: boolean }, write: (ids: ArrayLike<number>) => Promise<void>): Promise<number> {
  const eos = tok.eosId, it = documents(file, o.textField)[Symbol.asyncIterator]();
  let fileEnded = false, textTokens = 0;
  while (!fileEnded) {
    let any = false;
    const pieces = async function* () {
      for (;;) {
        const r = await it.next();
        if (r.done) {
          fileEnded = true;
          return;
        }
        if (r.value === null) return;
        any = true;
        yield r.value;
      }
    };
    for await (const ids of encodeChunks(tok, pieces(), { specials: o.specials })) {
      await write(ids);
      textTokens += ids.length;
    }
    if (any && eos !== undefined) await write([eos]);
  }
  return textTokens;
}

async function contentKey(files: string[], tok: Tokenizer, o: CorpusOptions): Promise<string> {
  const h = createHash('sha256');
  h.update(JSON.stringify({ v: 1, specials: o.specials, field: o.textField }));
  h.update(createHash('sha256').update(tok.vocabJson()).update(tok.mergesTxt()).digest());
  for (const f of files) {
    h.update(extname(f).toLowerCase());
    for await (const chunk of createReadStream(f)) h.update(chunk as Buffer);
    h.update('\0');
  }
  return h.digest('hex').slice(0, 32);
}

/** Tokenizes the data (or reads the cached tokens). Documents are separated by <|endoftext|>. */
export async function loadCorpus(paths: string[], tok: Tokenizer, o: CorpusOptions): Promise<Corpus> {
  const files = await expandPaths(paths);
  const key = await contentKey(files, tok, o);
  const wide = tok.vocabSize > 65536;
  const cachePath = join(o.cacheDir, `${key}.tokens${wide ? '32' : '16'}`);
  if (existsSync(cachePath)) {
    const b = await readFile(cachePath);
    const buf = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
    return { tokens: wide ? new Uint32Array(buf) : new Uint16Array(buf), files, fromCache: true };
  }
  await mkdir(o.cacheDir, { recursive: true });
  const tmp = `${cachePath}.tmp-${process.pid}`;
  const out = await open(tmp, 'w');
  const write = async (ids: ArrayLike<number>) => {
    const arr = wide ? Uint32Array.from(ids) : Uint16Array.from(ids);
    await out.write(new Uint8Array(arr.buffer));
  };
  let textTokens = 0;
  try {
    const totalBytes = files.reduce((n, f) => n + statSync(f).size, 0);
    let doneBytes = 0;
    for (const file of files) {
      textTokens += await tokenizeFile(file, tok, o, write);
      doneBytes += statSync(file).size;
      o.onProgress?.(`tokenized ${file}`, totalBytes ? doneBytes / totalBytes : 1);
    }
  } catch (err) {
    await out.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await out.close();
  if (textTokens === 0) {
    await rm(tmp, { force: true });
    throw new GPT2Error(`The data (${files.join(', ')}) contains no text; give a file with some.`);
  }
  await rename(tmp, cachePath);
  return { ...(await loadCorpus(paths, tok, o)), fromCache: false };
}
