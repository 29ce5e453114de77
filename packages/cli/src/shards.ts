// Token shards on disk, read a window at a time with positioned reads: resident memory does not grow
// with the data. Two formats, both uint16 GPT-2 token ids, little-endian:
//   llm.c's (dev/data/*.py): a header of 256 int32 (magic 20240520, version 1, the token count), then
//     the tokens; known by the magic number;
//   nanoGPT's (data/*/prepare.py: train.bin, val.bin): the tokens alone; any other .bin file.
// The files of a set read as one stream, in the order given (globs sorted).
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { GPT2Error, type TokenSource } from '@gpt2/core';

export const LLMC_MAGIC = 20240520, LLMC_VERSION = 1, LLMC_HEADER_BYTES = 256 * 4;

export interface Shard {
  path: string;
  format: 'llm.c' | 'nanoGPT';
  /** bytes before the first token, and the tokens it holds */
  offset: number;
  count: number;
}

/** True when every path is a .bin file: training reads them as token shards, not as text. */
export const areShards = (files: string[]) => files.length > 0 && files.every((f) => f.endsWith('.bin'));

/** The shards' formats and token counts, checked against their sizes; a bad one in one sentence naming it. */
function describe(path: string, fd: number): Shard {
  const size = fstatSync(fd).size;
  const head = new Int32Array(3);
  const got = size >= 12 ? readSync(fd, head, 0, 12, 0) : 0;
  if (got === 12 && head[0] === LLMC_MAGIC) {
    if (head[1] !== LLMC_VERSION) throw new GPT2Error(`${path} is an llm.c token shard of version ${head[1]}; only version ${LLMC_VERSION} (uint16 tokens) is read.`);
    const count = head[2];
    if (size !== LLMC_HEADER_BYTES + 2 * count) throw new GPT2Error(`${path} is an llm.c token shard whose header promises ${count} tokens (${LLMC_HEADER_BYTES + 2 * count} bytes) but it holds ${size} bytes: it is truncated or corrupt; write it again.`);
    return { path, format: 'llm.c', offset: LLMC_HEADER_BYTES, count };
  }
  if (size % 2 !== 0) throw new GPT2Error(`${path} has an odd number of bytes (${size}): it is neither an llm.c shard (no magic ${LLMC_MAGIC}) nor nanoGPT's raw uint16 tokens.`);
  return { path, format: 'nanoGPT', offset: 0, count: size / 2 };
}

/** The files stay open for the life of the process (training reads them to its end). */
export class ShardTokens implements TokenSource {
  readonly length: number;
  private readonly starts: number[]; // the stream index of each shard's first token

  private constructor(readonly shards: Shard[], private readonly fds: number[]) {
    this.starts = [];
    let n = 0;
    for (const s of shards) {
      this.starts.push(n);
      n += s.count;
    }
    this.length = n;
  }

  /**
   * Opens the shards and reads each once through, in 8 MB pieces, to check that every id is below
   * `vocabSize` (what the model can embed).
   */
  static open(paths: string[], vocabSize: number): ShardTokens {
    const fds: number[] = [];
    try {
      const shards = paths.map((p) => {
        fds.push(openSync(p, 'r'));
        return describe(p, fds[fds.length - 1]);
      });
      const piece = new Uint16Array(4 << 20);
      shards.forEach((s, i) => {
        for (let t = 0; t < s.count; t += piece.length) {
          const n = Math.min(piece.length, s.count - t);
          readSync(fds[i], piece, 0, 2 * n, s.offset + 2 * t);
          for (let k = 0; k < n; k++)
            if (piece[k] >= vocabSize) throw new GPT2Error(`${s.path} holds token id ${piece[k]} at position ${t + k}, past the model's vocabulary of ${vocabSize}: these shards were written for another tokenizer.`);
        }
      });
      return new ShardTokens(shards, fds);
    } catch (err) {
      for (const fd of fds) closeSync(fd);
      throw err;
    }
  }

  window(start: number, count: number): Uint16Array {
    const out = new Uint16Array(count);
    let i = this.shardAt(start), done = 0;
    while (done < count) {
      const s = this.shards[i], from = start + done - this.starts[i], n = Math.min(count - done, s.count - from);
      readSync(this.fds[i], out.subarray(done, done + n), 0, 2 * n, s.offset + 2 * from);
      done += n;
      i++;
    }
    return out;
  }

  /** What identifies the data for the ranks' comparison: each shard's size and its first and last tokens. */
  fingerprint(): Uint8Array[] {
    return this.shards.flatMap((s, i) => {
      const n = Math.min(s.count, 32768), first = this.window(this.starts[i], n), last = this.window(this.starts[i] + s.count - n, n);
      return [new TextEncoder().encode(`${s.format}:${s.count}|`), new Uint8Array(first.buffer), new Uint8Array(last.buffer)];
    });
  }

  private shardAt(index: number): number {
    let lo = 0, hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}
