// Where the page gets model files: the Hugging Face hub (an id like "gpt2" or "org/name", or a
// .../resolve/<revision>/ URL), local files, or Cache Storage, which keeps every download.
import type { ModelFiles } from './protocol.js';

const FILES = { config: 'config.json', model: 'model.safetensors', vocab: 'vocab.json', merges: 'merges.txt' } as const;
const CACHE = 'gpt2-models';

/** The base URL that `config.json` etc. hang off. */
export function baseUrl(source: string, endpoint: string): string {
  const s = source.trim();
  if (/^https?:\/\//.test(s)) return s.replace(/(config\.json|model\.safetensors|vocab\.json|merges\.txt)$/, '').replace(/\/?$/, '/');
  if (!/^[\w.-]+(\/[\w.-]+)?(@[\w.-]+)?$/.test(s)) throw new Error(`"${s}" is neither a hub id like gpt2 or org/name nor a URL.`);
  const [repo, rev = 'main'] = s.split('@');
  return `${endpoint.replace(/\/+$/, '')}/${repo}/resolve/${rev}/`;
}

/** Fetches url (or takes it from Cache Storage) and keeps it there; says why when it could not be kept (a full storage: the download still serves, and any copy kept before stays). */
async function fetchWithProgress(url: string, onBytes: (n: number, total: number) => void, onNotKept: (why: string) => void): Promise<ArrayBuffer> {
  const cache = 'caches' in globalThis ? await caches.open(CACHE) : undefined;
  const hit = await cache?.match(url);
  if (hit) {
    const buf = await hit.arrayBuffer();
    onBytes(buf.byteLength, buf.byteLength);
    return buf;
  }
  let res: Response;
  try {
    res = await fetch(url);
  } catch {
    throw new Error(`Cannot reach ${new URL(url).origin}; check the address or your connection.`);
  }
  if (!res.ok) throw new Error(`${url} answered HTTP ${res.status}${res.status === 404 ? ' (no such model or file)' : ''}.`);
  const total = Number(res.headers.get('content-length') ?? 0);
  const reader = res.body!.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    n += value.length;
    onBytes(n, Math.max(total, n));
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  try {
    await cache?.put(url, new Response(out, { headers: { 'content-type': 'application/octet-stream' } }));
  } catch (err) {
    onNotKept((err as Error).name === 'QuotaExceededError' ? "this site's storage is full" : (err as Error).message);
  }
  return out.buffer;
}

/** Downloads (or takes from Cache Storage) the four files; progress is bytes over all of them; onNote hears of files that could not be kept. */
export async function fromUrl(base: string, onProgress: (fraction: number, label: string) => void, onNote: (note: string) => void = () => {}): Promise<ModelFiles> {
  const entries = Object.entries(FILES) as [keyof ModelFiles, string][];
  const sizes = new Map<string, [number, number]>();
  const report = (file: string, n: number, t: number) => {
    sizes.set(file, [n, t]);
    const [done, total] = [...sizes.values()].reduce((a, [x, y]) => [a[0] + x, a[1] + y], [0, 0]);
    onProgress(total ? done / total : 0, `${file}: ${(n / 1e6).toFixed(1)} MB`);
  };
  const notKept: string[] = [];
  let why = '';
  const bufs = await Promise.all(entries.map(([, f]) => fetchWithProgress(base + f, (n, t) => report(f, n, t), (w) => {
    notKept.push(f);
    why = w;
  })));
  if (notKept.length) onNote(`The model loaded, but ${notKept.sort().join(', ')} could not be kept in this browser (${why}), so it will download again next time; free some storage for this site to keep it.`);
  return Object.fromEntries(entries.map(([k], i) => [k, bufs[i]])) as unknown as ModelFiles;
}

/** The four files from a drop or a file picker, matched by name. */
export async function fromFiles(list: FileList | File[]): Promise<ModelFiles> {
  const byName = new Map(Array.from(list).map((f) => [f.name, f]));
  const missing = Object.values(FILES).filter((n) => !byName.has(n));
  if (missing.length) throw new Error(`Missing ${missing.join(', ')}: drop config.json, model.safetensors, vocab.json and merges.txt together.`);
  const read = (n: string) => byName.get(n)!.arrayBuffer();
  return { config: await read(FILES.config), model: await read(FILES.model), vocab: await read(FILES.vocab), merges: await read(FILES.merges) };
}

/** Base URLs of models kept in Cache Storage. */
export async function cachedModels(): Promise<string[]> {
  if (!('caches' in globalThis)) return [];
  const keys = await (await caches.open(CACHE)).keys();
  return [...new Set(keys.filter((r) => r.url.endsWith('/config.json')).map((r) => r.url.slice(0, -'config.json'.length)))];
}
