// gpt2 prepare: a corpus of any size (files, folders, globs; .txt/.md, .jsonl/.csv by a field, and
// those as .gz or .zst) as token shards in llm.c's format, the first held out as validation, as
// llm.c's dev/data/fineweb.py writes them. Files are tokenized in parallel by worker threads (each
// file whole by one worker, its documents streamed: bounded memory), each into a token file of its
// own under OUT/.prepare/; those are then cut, in the files' order, into shards of --shard-size
// tokens. So the shards are the same whatever the number of workers, and a killed run, started
// again with the same command, keeps the files it had finished. Under mpirun each rank tokenizes
// its share of the files (file i on rank i mod N) on its own cores, and rank 0 cuts the shards: OUT
// must be a folder every host sees (one machine, or a shared filesystem).
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { GPT2Error, type Tokenizer } from '@gpt2/core';
import { gpt2Tokenizer, loadTokenizerDir } from '@gpt2/core/node';
import { expandPaths, tokenizeFile } from '../corpus.js';
import { joinJob, reporterFor } from '../distributed.js';
import { LLMC_HEADER_BYTES, LLMC_MAGIC, LLMC_VERSION } from '../shards.js';
import { Reporter } from '../report.js';

export interface PrepareFlags {
  out: string;
  tokenizer?: string;
  shardSize: number;
  name: string;
  workers?: number;
  textField: string;
  specials: boolean;
  json?: boolean;
}

/** What a worker is asked: tokenize `file` into `dest` (written aside, renamed when whole). */
interface Job {
  index: number;
  file: string;
  dest: string;
}

const tokenizerOf = (dir?: string) => (dir ? loadTokenizerDir(dir) : gpt2Tokenizer());

/** A worker thread's loop (bin.ts starts it when workerData says so): one job at a time. */
export async function prepareWorker(data: { tokenizer?: string; textField: string; specials: boolean }, port: import('node:worker_threads').MessagePort): Promise<void> {
  const tok = await tokenizerOf(data.tokenizer);
  port.on('message', async (job: Job | null) => {
    if (!job) return port.close();
    try {
      const tokens = await tokenizeTo(job.file, job.dest, tok, data);
      port.postMessage({ index: job.index, tokens });
    } catch (err) {
      port.postMessage({ index: job.index, error: (err as Error).message, known: err instanceof GPT2Error });
    }
  });
  port.postMessage({ ready: true });
}

/** One file's tokens (uint16) into dest, written aside and renamed into place, 1M tokens a write. */
async function tokenizeTo(file: string, dest: string, tok: Tokenizer, o: { textField: string; specials: boolean }): Promise<number> {
  const tmp = `${dest}.tmp`, out = await open(tmp, 'w'), buf = new Uint16Array(1 << 20);
  let tokens = 0, held = 0;
  const flush = async () => {
    await out.write(new Uint8Array(buf.buffer, 0, 2 * held));
    held = 0;
  };
  try {
    await tokenizeFile(file, tok, o, async (ids) => {
      for (let i = 0; i < ids.length; ) {
        const n = Math.min(ids.length - i, buf.length - held);
        for (let k = 0; k < n; k++) buf[held + k] = ids[i + k];
        held += n;
        i += n;
        if (held === buf.length) await flush();
      }
      tokens += ids.length;
    });
    await flush();
  } finally {
    await out.close();
  }
  await rename(tmp, dest);
  return tokens;
}

export async function runPrepare(paths: string[], f: PrepareFlags): Promise<void> {
  const comm = await joinJob();
  const report = comm.rank === 0 ? new Reporter(Boolean(f.json)) : reporterFor(comm);
  if (!(Number.isInteger(f.shardSize) && f.shardSize >= 1)) throw new GPT2Error(`--shard-size must be a whole number of tokens >= 1 (got ${f.shardSize}).`);
  if (!/^[\w.-]+$/.test(f.name)) throw new GPT2Error(`--name '${f.name}' must be letters, digits, '.', '-' or '_': it starts every shard's file name.`);
  const files = (await expandPaths(paths)).map((p) => resolve(p));
  const tok = await tokenizerOf(f.tokenizer);
  if (tok.vocabSize > 65536) throw new GPT2Error(`The tokenizer has ${tok.vocabSize} tokens; llm.c's shards hold uint16 ids (at most 65536).`);
  const work = join(f.out, '.prepare');
  // the work folder belongs to one set of inputs: the same files (path, size, time), tokenizer and options
  const key = createHash('sha256').update(JSON.stringify({ files: files.map((p) => [p, statSync(p).size, statSync(p).mtimeMs]), vocab: tok.vocabJson(), merges: tok.mergesTxt(), field: f.textField, specials: f.specials })).digest('hex');
  const sameInputs = await comm.allGatherBytes(Buffer.from(key, 'hex'));
  const other = sameInputs.findIndex((k) => !Buffer.from(k).equals(Buffer.from(sameInputs[0])));
  if (other > 0) throw new GPT2Error(`rank ${other} (${comm.hosts[other]}) sees other files, sizes or options than rank 0 (${comm.hosts[0]}); every host needs the same files at the same paths.`);
  const keyFile = join(work, 'key');
  if (comm.rank === 0) {
    await mkdir(work, { recursive: true });
    if (existsSync(keyFile) && (await readFile(keyFile, 'utf8')) !== key) {
      report.line(`note: ${work} holds an earlier preparation of other files or options; starting over`);
      await rm(work, { recursive: true, force: true });
      await mkdir(work, { recursive: true });
    }
    await writeFile(keyFile, key);
  }
  await comm.barrier();
  if (!existsSync(keyFile)) throw new GPT2Error(`rank ${comm.rank} (${comm.host}) does not see ${work}, which rank 0 made: under mpirun --out must be a folder every host shares.`);
  const unit = (i: number) => join(work, `${String(i).padStart(6, '0')}.tokens`);
  const left = files.map((file, index) => ({ index, file, dest: unit(index) })).filter((j) => !existsSync(j.dest));
  if (left.length < files.length) report.line(`continuing: ${files.length - left.length} of ${files.length} file(s) were tokenized by an earlier run`);
  const todo = left.filter((j) => j.index % comm.size === comm.rank); // this rank's share

  const size = (p: string) => statSync(p).size, sum = (jobs: Job[]) => jobs.reduce((n, j) => n + size(j.file), 0);
  const totalBytes = files.reduce((n, p) => n + size(p), 0), newBytes = sum(left), mine = sum(todo);
  const t0 = performance.now();
  let doneBytes = 0; // of this rank's share: its bar
  const progress = report.items('tokenizing (MB)', Math.max(1, Math.round(mine / 1e6)));
  const workers = Math.max(1, Math.min(f.workers ?? availableParallelism(), todo.length || 1));
  await runWorkers(todo, workers, { tokenizer: f.tokenizer, textField: f.textField, specials: f.specials }, (job) => {
    doneBytes += size(job.file);
    const mbps = doneBytes / 1e6 / ((performance.now() - t0) / 1000);
    progress(Math.round(doneBytes / 1e6), `${mbps.toFixed(1)} MB/s, ${workers} worker(s)`);
  });
  report.stop();
  comm.arrive('the end of tokenizing');
  await comm.barrier();
  const seconds = (performance.now() - t0) / 1000;
  if (comm.rank !== 0) return;
  const missing = files.findIndex((_, i) => !existsSync(unit(i)));
  if (missing >= 0) throw new GPT2Error(`${unit(missing)} (the tokens of ${files[missing]}, tokenized by rank ${missing % comm.size}) is not there: under mpirun --out must be a folder every host shares.`);

  // the files' tokens, in their order, cut into shards: the first is validation, as llm.c's
  const shards = await writeShards(files.map((_, i) => unit(i)), f.out, f.name, f.shardSize);
  const tokens = shards.reduce((n, s) => n + s.tokens, 0);
  if (tokens === 0) throw new GPT2Error(`The data (${files.join(', ')}) contains no text; give files with some.`);
  await rm(work, { recursive: true, force: true });
  const mbps = newBytes / 1e6 / seconds, where = `${workers} worker(s)${comm.size > 1 ? ` on each of ${comm.size} ranks` : ''}`;
  if (f.json) process.stdout.write(JSON.stringify({ out: f.out, shards, tokens, files: files.length, bytes: totalBytes, workers, ranks: comm.size, seconds: +seconds.toFixed(2), MBps: +mbps.toFixed(2) }) + '\n');
  else {
    report.line(`${tokens} tokens from ${files.length} file(s) (${(totalBytes / 1e6).toFixed(1)} MB, ${mbps.toFixed(1)} MB/s on ${where}) in ${shards.length} shard(s): ${shards[0].file}${shards.length > 1 ? ` ... ${shards[shards.length - 1].file}` : ''}`);
    report.line(`train on them: gpt2 train '${join(f.out, `${f.name}_train_*.bin`)}' --val-data '${join(f.out, `${f.name}_val_*.bin`)}' --init gpt2`);
  }
}

/** Hands the jobs to `n` worker threads, a job at a time to whichever is free; the first error ends them all. */
async function runWorkers(jobs: Job[], n: number, data: object, done: (job: Job) => void): Promise<void> {
  if (jobs.length === 0) return;
  const queue = [...jobs];
  const threads = Array.from({ length: n }, () => new Worker(process.argv[1], { workerData: { gpt2: 'prepare', ...data } }));
  try {
    await Promise.all(
      threads.map(
        (w) =>
          new Promise<void>((resolveAll, reject) => {
            const next = () => {
              const job = queue.shift();
              if (!job) return resolveAll();
              w.once('message', (m: { index: number; tokens?: number; error?: string; known?: boolean }) => {
                if (m.error) return reject(m.known ? new GPT2Error(m.error) : new Error(m.error));
                done(job);
                next();
              });
              w.postMessage(job);
            };
            w.once('error', reject);
            w.once('message', next); // { ready }
          }),
      ),
    );
  } finally {
    await Promise.all(threads.map((w) => w.terminate()));
  }
}

interface ShardInfo {
  file: string;
  tokens: number;
}

/** The units' tokens, in order, as llm.c shards of `shardSize` tokens: NAME_val_000000.bin, then NAME_train_000001.bin ... */
async function writeShards(units: string[], out: string, name: string, shardSize: number): Promise<ShardInfo[]> {
  const shards: ShardInfo[] = [];
  let cur: { fh: FileHandle; tmp: string; file: string; tokens: number } | undefined;
  const close = async () => {
    if (!cur) return;
    const header = new Int32Array(256);
    header.set([LLMC_MAGIC, LLMC_VERSION, cur.tokens]);
    await cur.fh.write(new Uint8Array(header.buffer), 0, LLMC_HEADER_BYTES, 0);
    await cur.fh.close();
    await rename(cur.tmp, join(out, cur.file));
    shards.push({ file: cur.file, tokens: cur.tokens });
    cur = undefined;
  };
  for (const u of units) {
    for await (const chunk of createReadStream(u, { highWaterMark: 8 << 20 })) {
      let b = chunk as Buffer;
      while (b.length > 0) {
        if (!cur) {
          const k = shards.length, file = `${name}_${k === 0 ? 'val' : 'train'}_${String(k).padStart(6, '0')}.bin`, tmp = join(out, `${file}.tmp`);
          cur = { fh: await open(tmp, 'w'), tmp, file, tokens: 0 };
          await cur.fh.write(new Uint8Array(LLMC_HEADER_BYTES), 0, LLMC_HEADER_BYTES, 0);
        }
        const take = Math.min(b.length, 2 * (shardSize - cur.tokens));
        await cur.fh.write(b, 0, take, LLMC_HEADER_BYTES + 2 * cur.tokens);
        cur.tokens += take / 2;
        b = b.subarray(take);
        if (cur.tokens === shardSize) await close();
      }
    }
  }
  await close();
  return shards;
}
