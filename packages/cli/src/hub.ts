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
import { GPT2Error } from '@gpt2/core';

export const REQUIRED_FILES = ['config.json', 'model.safetensors'];
export const OPTIONAL_FILES = ['vocab.json', 'merges.txt', 'tokenizer.json', 'generation_config.json'];

export interface HubOptions {
  endpoint: string;
  token?: string;
  cacheDir: string;
  offline: boolean;
  onProgress?: (file: string, done: number, total: number) => void;
}

export function hubOptionsFromEnv(env = process.env): HubOptions {
  const hfHome = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  let token = env.HF_TOKEN;
  if (!token && existsSync(join(hfHome, 'token'))) token = readFileSync(join(hfHome, 'token'), 'utf8').trim() || undefined;
  return {
    endpoint: (env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, ''),
    token,
    cacheDir: env.HF_HUB_CACHE ?? join(hfHome, 'hub'),
    offline: ['1', 'true', 'yes', 'on'].includes((env.HF_HUB_OFFLINE ?? '').toLowerCase()),
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
  return REQUIRED_FILES.every((f) => existsSync(join(snap, f))) ? snap : undefined;
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
  for (const file of [...REQUIRED_FILES, ...OPTIONAL_FILES]) {
    let meta: FileMeta | undefined;
    try {
      meta = await headFile(o, repo, revision, file);
    } catch (err) {
      if (err instanceof GPT2Error) throw err;
      if (cached) return cached; // as huggingface_hub does: the cache serves when the hub is unreachable
      throw new GPT2Error(
        `Cannot reach the Hugging Face hub at ${o.endpoint} (${causeOf(err)}); check the connection, or pass a local model directory.`,
      );
    }
    if (!meta) {
      if (REQUIRED_FILES.includes(file)) throw new GPT2Error(`The hub repo ${repo} has no ${file} at ${revision}; it is not a GPT-2 model in safetensors format.`);
      continue;
    }
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
  }
  return snapshot!;
}

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
  let url = fileUrl(o, repo, revision, file);
  let res = await fetch(url, { method: 'HEAD', redirect: 'manual', headers: authHeaders(o) });
  for (let hops = 0; hops < 5 && res.status >= 300 && res.status < 400 && res.headers.get('location')?.startsWith('/'); hops++) {
    url = new URL(res.headers.get('location')!, url).href;
    res = await fetch(url, { method: 'HEAD', redirect: 'manual', headers: authHeaders(o) });
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

/** GET into blobs/ETAG.incomplete (resuming with Range), verify, then rename into place. */
async function fetchBlob(o: HubOptions, repo: string, revision: string, file: string, meta: FileMeta, blob: string): Promise<void> {
  await mkdir(dirname(blob), { recursive: true });
  const part = `${blob}.incomplete`;
  const have = existsSync(part) ? (await stat(part)).size : 0;
  const headers = { ...authHeaders(o), ...(have > 0 ? { range: `bytes=${have}-` } : {}) };
  let res: Response;
  try {
    res = await fetch(fileUrl(o, repo, revision, file), { headers });
  } catch (err) {
    throw new GPT2Error(`Downloading ${repo}/${file} failed (${causeOf(err)}); run the command again to resume.`);
  }
  if (!res.ok || !res.body) throw new GPT2Error(`Downloading ${repo}/${file} failed with HTTP ${res.status}; run the command again to resume.`);
  const resumed = res.status === 206;
  let done = resumed ? have : 0;
  const total = Number.isFinite(meta.size) ? meta.size : done + Number(res.headers.get('content-length') ?? 0);
  const body = Readable.fromWeb(res.body as never);
  body.on('data', (chunk: Buffer) => {
    done += chunk.length;
    o.onProgress?.(file, done, total);
  });
  try {
    await pipeline(body, createWriteStream(part, { flags: resumed ? 'a' : 'w' }));
  } catch (err) {
    throw new GPT2Error(`Downloading ${repo}/${file} was interrupted (${causeOf(err)}); run the command again to resume.`);
  }
  const digest = await checksum(part, meta.etag);
  if (digest !== meta.etag) {
    await rm(part, { force: true });
    throw new GPT2Error(`The download of ${repo}/${file} is corrupted (checksum ${digest} instead of ${meta.etag}); run the command again.`);
  }
  await rename(part, blob);
}

/** sha256 for 64-hex etags (LFS), git's blob sha1 for 40-hex ones (headFile admits no other). */
async function checksum(path: string, etag: string): Promise<string> {
  const hash = createHash(etag.length === 64 ? 'sha256' : 'sha1');
  if (etag.length === 40) hash.update(`blob ${(await stat(path)).size}\0`);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
