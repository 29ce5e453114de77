// Hugging Face hub downloads into the standard cache (the layout Python's huggingface_hub uses:
// models--org--name/{blobs/ETAG, snapshots/COMMIT/FILE -> ../../blobs/ETAG, refs/REVISION}), so
// models a user already downloaded with Python are reused and ours are reused by Python.
// Downloads show progress, resume from `.incomplete` with an HTTP Range request, and are verified
// against the hub's checksum (sha256 for LFS files, the git blob sha1 otherwise). No name from the
// server or the user becomes a path unchecked: commits must be 40 hex digits, ETags 40 or 64,
// revisions plain path segments, and every path written must lie inside the repo's cache folder.
// @huggingface/hub's downloadFileToCacheDir offers none of progress, resume, verification or
// refs/, so this module speaks the same protocol directly with fetch.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GPT2Error, parseShardIndex } from '@gpt2/core';
import { WEIGHT_FILES, weightFilesOf } from '@gpt2/core/node';

export const REQUIRED_FILES = ['config.json'];
export const OPTIONAL_FILES = ['vocab.json', 'merges.txt', 'tokenizer.json', 'generation_config.json'];

export interface HubOptions {
  endpoint: string;
  token?: string;
  cacheDir: string;
  offline: boolean;
  /** Seconds to wait for the hub's answer to a metadata request (HF_HUB_ETAG_TIMEOUT; default 10). */
  etagTimeout?: number;
  /** Seconds a download may go without data before it is resumed (HF_HUB_DOWNLOAD_TIMEOUT; default 10). */
  downloadTimeout?: number;
  onProgress?: (file: string, done: number, total: number) => void;
}

const seconds = (v: string | undefined) => (v !== undefined && Number(v) > 0 ? Number(v) : 10);
const ATTEMPTS = 5; // tries of one download (resumed from the bytes on disk), with backoff between them (at most the timeout)

export function hubOptionsFromEnv(env = process.env): HubOptions {
  const hfHome = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  let token = env.HF_TOKEN;
  if (!token && existsSync(join(hfHome, 'token'))) token = readFileSync(join(hfHome, 'token'), 'utf8').trim() || undefined;
  return {
    endpoint: (env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, ''),
    token,
    cacheDir: env.HF_HUB_CACHE ?? join(hfHome, 'hub'),
    offline: ['1', 'true', 'yes', 'on'].includes((env.HF_HUB_OFFLINE ?? '').toLowerCase()),
    etagTimeout: seconds(env.HF_HUB_ETAG_TIMEOUT),
    downloadTimeout: seconds(env.HF_HUB_DOWNLOAD_TIMEOUT),
  };
}

/** `gpt2`, `org/name`, optionally `@revision` (a branch, tag, `refs/pr/N` or commit). */
export function parseRepoId(id: string): { repo: string; revision: string } {
  const [repo, revision = 'main', ...rest] = id.split('@');
  if (!/^[\w.-]+(\/[\w.-]+)?$/.test(repo) || repo.includes('..')) {
    throw new GPT2Error(`'${id}' is neither a local directory nor a hub model id like gpt2 or org/name.`);
  }
  // the revision names a file under refs/: plain path segments only
  if (rest.length || !/^[\w.-]+(\/[\w.-]+)*$/.test(revision) || revision.split('/').some((seg) => /^\.+$/.test(seg))) {
    throw new GPT2Error(`'${id}' names the revision '${id.slice(repo.length + 1)}', which is not a branch, tag or commit name; write org/name@main, @v1.0 or @<40-hex commit>.`);
  }
  return { repo, revision };
}

const repoFolder = (cacheDir: string, repo: string) => join(cacheDir, `models--${repo.replace(/\//g, '--')}`);
const isCommit = (rev: string) => /^[0-9a-f]{40}$/.test(rev);
const isBlobName = (etag: string) => /^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(etag);

/** path, checked to lie inside folder (every path the client writes goes through here). */
function inside(folder: string, path: string): string {
  const rel = relative(resolve(folder), resolve(path));
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) throw new GPT2Error(`Refusing to write ${path}: it is outside the Hugging Face cache folder ${folder}.`);
  return path;
}

/** The cached snapshot directory for repo@revision, if it holds the required files. */
export async function cachedSnapshot(repo: string, revision: string, cacheDir: string): Promise<string | undefined> {
  const folder = repoFolder(cacheDir, repo);
  let commit = revision;
  if (!isCommit(revision)) {
    const ref = join(folder, 'refs', revision);
    if (!existsSync(ref)) return undefined;
    commit = (await readFile(ref, 'utf8')).trim();
    if (!isCommit(commit)) return undefined; // not written by a hub client: ask the hub again
  }
  const snap = join(folder, 'snapshots', commit);
  return REQUIRED_FILES.every((f) => existsSync(join(snap, f))) && (await hasWeights(snap)) ? snap : undefined;
}

/** Whether a snapshot holds a whole set of weights: one file, or an index with every shard it names (a damaged index: no). */
async function hasWeights(snap: string): Promise<boolean> {
  const files = await weightFilesOf(snap).catch(() => []);
  return files.length > 0 && files.every((f) => existsSync(join(snap, f)));
}

interface FileMeta {
  commit: string;
  etag: string;
  size: number;
}

/**
 * Downloads (or finds in the cache) the model files of a hub repo and returns the snapshot
 * directory. Offline, or when the hub cannot be reached, a cached snapshot is used if present.
 */
export async function downloadModel(id: string, o: HubOptions): Promise<string> {
  const { repo, revision } = parseRepoId(id);
  const cached = await cachedSnapshot(repo, revision, o.cacheDir);
  if (o.offline) {
    if (cached) return cached;
    throw new GPT2Error(
      `${id} is not in the Hugging Face cache (${o.cacheDir}) and HF_HUB_OFFLINE is set; download it on a connected machine with 'gpt2 download ${id}', or pass a local model directory.`,
    );
  }
  const folder = repoFolder(o.cacheDir, repo);
  let snapshot: string | undefined;
  /** One file into the cache (HEAD, then the blob unless present, the snapshot's link and the ref); false when the repo has no such file. */
  const get = async (file: string): Promise<boolean> => {
    let meta: FileMeta | undefined;
    try {
      meta = await headFile(o, repo, revision, file);
    } catch (err) {
      if (err instanceof GPT2Error) throw err;
      throw new Unreachable('unreachable', { cause: err });
    }
    if (!meta) return false;
    snapshot = inside(folder, join(folder, 'snapshots', meta.commit));
    const pointer = inside(folder, join(snapshot, file));
    if (!existsSync(pointer)) {
      const blob = inside(folder, join(folder, 'blobs', meta.etag));
      if (!existsSync(blob)) await fetchBlob(o, repo, revision, file, meta, blob);
      await mkdir(dirname(pointer), { recursive: true });
      await symlink(relative(dirname(pointer), blob), pointer);
    }
    if (!isCommit(revision)) {
      const ref = inside(folder, join(folder, 'refs', revision));
      await mkdir(dirname(ref), { recursive: true });
      await writeFile(ref, meta.commit);
    }
    return true;
  };
  try {
    for (const file of REQUIRED_FILES) {
      if (!(await get(file))) throw new GPT2Error(`The hub repo ${repo} has no ${file} at ${revision}; it is not a Hugging Face model.`);
    }
    let weights: string | undefined;
    for (const file of WEIGHT_FILES) {
      if (await get(file)) {
        weights = file;
        break;
      }
    }
    if (!weights) throw new GPT2Error(`The hub repo ${repo} has no model weights at ${revision} (model.safetensors, its shards, or pytorch_model.bin); it is not a GPT-2 model gpt2.ts can read.`);
    if (weights.endsWith('.index.json')) {
      // every shard the index names, each resumable as any file
      for (const shard of parseShardIndex(await readFile(join(snapshot!, weights), 'utf8'), `${repo}/${weights}`).files) {
        if (!(await get(shard))) throw new GPT2Error(`${repo}/${weights} names the shard ${shard}, which the hub does not have at ${revision}; the repo is incomplete.`);
      }
    }
    for (const file of OPTIONAL_FILES) await get(file);
  } catch (err) {
    if (!(err instanceof Unreachable)) throw err;
    if (cached) return cached; // as huggingface_hub does: the cache serves when the hub is unreachable
    throw new GPT2Error(`Cannot reach the Hugging Face hub at ${o.endpoint} (${causeOf(err.cause)}); check the connection, or pass a local model directory.`);
  }
  return snapshot!;
}

/** A metadata request that got no answer (as opposed to an answer we refuse). */
class Unreachable extends Error {}

function causeOf(err: unknown): string {
  const e = err as { cause?: { code?: string; message?: string }; message?: string };
  return e.cause?.code ?? e.cause?.message ?? e.message ?? String(err);
}

const authHeaders = (o: HubOptions): Record<string, string> => (o.token ? { authorization: `Bearer ${o.token}` } : {});
const fileUrl = (o: HubOptions, repo: string, revision: string, file: string) =>
  `${o.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${file}`;

/**
 * HEAD as huggingface_hub does it: relative redirects are followed (a renamed repo, e.g. gpt2 ->
 * openai-community/gpt2), absolute ones are not (an LFS file's 302 to its CDN carries
 * X-Linked-Etag / X-Linked-Size itself).
 */
async function headFile(o: HubOptions, repo: string, revision: string, file: string): Promise<FileMeta | undefined> {
  const limit = o.etagTimeout ?? 10;
  const head = async (url: string) => {
    try {
      return await fetch(url, { method: 'HEAD', redirect: 'manual', headers: authHeaders(o), signal: AbortSignal.timeout(limit * 1000) });
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') throw new Error(`no answer within ${limit} s; HF_HUB_ETAG_TIMEOUT sets the limit`);
      throw err;
    }
  };
  let url = fileUrl(o, repo, revision, file);
  let res = await head(url);
  for (let hops = 0; hops < 5 && res.status >= 300 && res.status < 400 && res.headers.get('location')?.startsWith('/'); hops++) {
    url = new URL(res.headers.get('location')!, url).href;
    res = await head(url);
  }
  if (res.status === 404) return undefined;
  if (res.status === 401 || res.status === 403) {
    throw new GPT2Error(`The hub refused access to ${repo} (HTTP ${res.status}); if it is private or gated, set HF_TOKEN to a token that can read it.`);
  }
  if (res.status >= 400) throw new GPT2Error(`The hub answered HTTP ${res.status} for ${repo}/${file}; try again later.`);
  const h = res.headers;
  const etag = (h.get('x-linked-etag') ?? h.get('etag') ?? '').replace(/^W\//, '').replace(/"/g, '');
  const commit = h.get('x-repo-commit') ?? '';
  const size = Number(h.get('x-linked-size') ?? h.get('content-length') ?? NaN);
  if (!etag || !commit) throw new GPT2Error(`The server at ${o.endpoint} did not answer like the Hugging Face hub (no ETag or X-Repo-Commit for ${file}); check HF_ENDPOINT.`);
  // both become names on disk (snapshots/COMMIT, blobs/ETAG): a server's word is not trusted for them
  if (!isCommit(commit)) throw new GPT2Error(`The server at ${o.endpoint} named the commit '${commit}' for ${repo}/${file}, which is not 40 hex digits; nothing was written (check HF_ENDPOINT).`);
  if (!isBlobName(etag)) throw new GPT2Error(`The server at ${o.endpoint} gave ${repo}/${file} the ETag '${etag}', which is not a 40- or 64-hex-digit hash; nothing was written (check HF_ENDPOINT).`);
  return { commit, etag, size };
}

/**
 * GET into blobs/ETAG.incomplete, verify, then rename into place. A download that fails or goes
 * downloadTimeout seconds without data is resumed from the bytes on disk with a Range request, up
 * to ATTEMPTS tries with backoff; a later run resumes the same way.
 */
async function fetchBlob(o: HubOptions, repo: string, revision: string, file: string, meta: FileMeta, blob: string): Promise<void> {
  await mkdir(dirname(blob), { recursive: true });
  const part = `${blob}.incomplete`;
  for (let attempt = 1; ; attempt++) {
    const why = await fetchPart(o, fileUrl(o, repo, revision, file), `${repo}/${file}`, file, meta, part);
    if (!why) break;
    if (attempt === ATTEMPTS) {
      throw new GPT2Error(
        `Downloading ${repo}/${file} from ${new URL(o.endpoint).host} failed ${ATTEMPTS} times (${why}); the bytes so far are kept: check the connection, then run the command again to resume.`,
      );
    }
    await new Promise((r) => setTimeout(r, 1000 * Math.min(o.downloadTimeout ?? 10, 0.5 * 2 ** (attempt - 1)))); // 0.5, 1, 2, 4 s
  }
  const digest = await checksum(part, meta.etag);
  if (digest !== meta.etag) {
    await rm(part, { force: true });
    throw new GPT2Error(`The download of ${repo}/${file} is corrupted (checksum ${digest} instead of ${meta.etag}); run the command again.`);
  }
  await rename(part, blob);
}

/** One try: appends to part from its current size; returns why it stopped short, or '' when complete. */
async function fetchPart(o: HubOptions, url: string, what: string, file: string, meta: FileMeta, part: string): Promise<string> {
  const have = existsSync(part) ? (await stat(part)).size : 0;
  const limit = o.downloadTimeout ?? 10;
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => abort.abort(), limit * 1000);
  };
  const stalled = `no data for ${limit} s; HF_HUB_DOWNLOAD_TIMEOUT sets the limit`;
  arm();
  try {
    const res = await fetch(url, { headers: { ...authHeaders(o), ...(have > 0 ? { range: `bytes=${have}-` } : {}) }, signal: abort.signal });
    if (res.status >= 400 && res.status < 500) throw new GPT2Error(`Downloading ${what} failed with HTTP ${res.status}; run the command again.`);
    if (!res.ok || !res.body) return `HTTP ${res.status}`;
    const resumed = res.status === 206;
    let done = resumed ? have : 0;
    const total = Number.isFinite(meta.size) ? meta.size : done + Number(res.headers.get('content-length') ?? 0);
    const body = Readable.fromWeb(res.body as never);
    body.on('data', (chunk: Buffer) => {
      arm();
      done += chunk.length;
      o.onProgress?.(file, done, total);
    });
    await pipeline(body, createWriteStream(part, { flags: resumed ? 'a' : 'w' }));
    return Number.isFinite(meta.size) && done < meta.size ? `the connection closed after ${done} of ${meta.size} bytes` : '';
  } catch (err) {
    if (err instanceof GPT2Error) throw err;
    return abort.signal.aborted ? stalled : causeOf(err);
  } finally {
    clearTimeout(timer);
  }
}

/** sha256 for 64-hex etags (LFS), git's blob sha1 for 40-hex ones (headFile admits no other). */
async function checksum(path: string, etag: string): Promise<string> {
  const hash = createHash(etag.length === 64 ? 'sha256' : 'sha1');
  if (etag.length === 40) hash.update(`blob ${(await stat(path)).size}\0`);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
