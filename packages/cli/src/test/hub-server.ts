// A local stand-in for the Hugging Face hub: serves model folders at hub-shaped URLs
// (/{repo}/resolve/{revision}/{file}) with the headers huggingface_hub reads. Large files behave
// like LFS files (302 to /lfs/{sha256} with X-Linked-Etag / X-Linked-Size); others answer 200 with
// the git blob sha1 as ETag. Range requests are honoured. Loopback only.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface HubServer {
  url: string;
  requests: { method: string; url: string; range?: string }[];
  /** Serve wrong bytes for this file's body (to test verification). */
  corrupt: Set<string>;
  /** Answer with this X-Repo-Commit, and this ETag for every file (a hostile server). */
  hostile: { commit?: string; etag?: string };
  /** The next `times` GETs of this file send `after` bytes, then nothing more (a stalled CDN). */
  stall: Map<string, { after: number; times: number }>;
  /** Accept connections and never answer (a hub that says nothing). */
  silent: boolean;
  close(): Promise<void>;
}

const COMMIT = 'a'.repeat(40);
const LFS_MIN = 100_000;

/** `repos` maps repo ids to folders; `renamed` maps old ids to new ones (answered with a relative 307, as the hub does). */
export async function startHubServer(repos: Record<string, string>, renamed: Record<string, string> = {}): Promise<HubServer> {
  let origin = '';
  const requests: HubServer['requests'] = [];
  const corrupt = new Set<string>();
  const hostile: HubServer['hostile'] = {};
  const stall: HubServer['stall'] = new Map();
  const state = { silent: false };
  const bySha = new Map<string, { data: Buffer; file: string }>();
  const server: Server = createServer((req, res) => {
    requests.push({ method: req.method!, url: req.url!, range: req.headers.range });
    if (state.silent) return;
    const send = (data: Buffer, file: string, headers: Record<string, string>) => {
      let body = corrupt.has(file) ? Buffer.from(data).fill(7, 0, 16) : data;
      let status = 200;
      const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      if (m) {
        body = body.subarray(Number(m[1]));
        status = 206;
      }
      res.writeHead(status, { ...headers, 'content-length': String(body.length) });
      const s = stall.get(file);
      if (s && s.times > 0 && req.method === 'GET') {
        s.times--;
        return res.write(body.subarray(0, s.after));
      }
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    const lfs = /^\/lfs\/([0-9a-f]{64})$/.exec(req.url!);
    if (lfs && bySha.has(lfs[1])) {
      const { data, file } = bySha.get(lfs[1])!;
      return send(data, file, {});
    }
    const m = /^\/(.+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url!);
    if (m && renamed[m[1]]) {
      res.writeHead(307, { location: `/${renamed[m[1]]}/resolve/${m[2]}/${m[3]}` });
      return res.end();
    }
    const dir = m && repos[m[1]];
    const path = dir && join(dir, m[3]);
    if (!m || !path || !existsSync(path)) {
      res.writeHead(404, { 'x-error-code': 'EntryNotFound' });
      return res.end();
    }
    const data = readFileSync(path);
    if (data.length >= LFS_MIN) {
      const sha = createHash('sha256').update(data).digest('hex');
      bySha.set(sha, { data, file: m[3] });
      // absolute, like the hub's CDN redirects
      res.writeHead(302, { location: `${origin}/lfs/${sha}`, 'x-linked-etag': `"${hostile.etag ?? sha}"`, 'x-linked-size': String(data.length), 'x-repo-commit': hostile.commit ?? COMMIT, etag: '"pointer"' });
      return res.end();
    }
    const sha1 = createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
    send(data, m[3], { etag: `"${hostile.etag ?? sha1}"`, 'x-repo-commit': hostile.commit ?? COMMIT });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  origin = `http://127.0.0.1:${port}`;
  return {
    url: origin, requests, corrupt, hostile, stall,
    get silent() { return state.silent; },
    set silent(v: boolean) { state.silent = v; },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
