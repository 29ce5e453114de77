// gpt2 bench --task serve: vLLM's serving benchmark against `gpt2 serve` in a child process.
// Requests of fixed prompt and output lengths (random token ids, ignore_eos) are sent by N
// concurrent streaming clients; each run reports request throughput, output tokens/s, time to
// first token (TTFT), time per output token after the first (TPOT) and inter-token latency (ITL),
// median and p99. The server runs with --slots S at every --concurrency, then with --slots 1 at the
// highest concurrency: continuous batching's gain is the ratio of the two output tokens/s.
// --soak: many requests from many clients, a tenth cancelled mid-stream and a tenth malformed;
// every valid one must come back in full, none with a 5xx, and the server's RSS is read before and after.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GPT2Error, type GPT2Config } from '@gpt2/core';
import { initConfig, readModel } from '../model-source.js';
import type { BenchFlags } from './bench.js';

export interface ServeBenchFlags extends BenchFlags {
  slots: number;
  concurrency: number[];
  requests?: number;
  soak?: boolean;
  /** a server already running (a peer): the same clients, no server started */
  url?: string;
}

interface Server {
  child: ChildProcess;
  url: string;
  rssMB(): number;
  stop(): Promise<number | null>;
}

const BIN = fileURLToPath(new URL('../bin.js', import.meta.url));

/** `gpt2 serve` on a free port; resolves once /health answers 200. */
async function startServer(f: ServeBenchFlags, slots: number, maxQueue: number): Promise<Server> {
  const args = ['serve', ...(f.model ? ['--model', f.model] : ['--init', f.init]), '--backend', f.backend, '--port', '0', '--slots', String(slots), '--max-queue', String(maxQueue)];
  if (f.threads) args.push('--threads', String(f.threads));
  if (f.quantize) args.push('--quantize', f.quantize);
  if (f.precision) args.push('--precision', f.precision);
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      err += s;
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new GPT2Error(`gpt2 serve exited (${code}) before listening: ${err.trim()}`)));
  });
  for (;;) {
    if (child.exitCode !== null) throw new GPT2Error(`gpt2 serve exited (${child.exitCode}) while loading: ${err.trim()}`);
    const ok = await fetch(`${url}/health`).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    child, url,
    rssMB: () => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024),
    stop: () => new Promise((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.kill('SIGTERM');
    }),
  };
}

interface Outcome {
  status: number;
  ttft?: number; // ms
  itl: number[]; // ms between chunks after the first
  latency: number; // ms
  tokens: number;
  finish?: string;
  cancelled?: boolean;
}

/** One streaming completion; `cancelAfter` chunks, then the client goes away. */
async function streamOne(url: string, body: unknown, cancelAfter?: number): Promise<Outcome> {
  const t0 = performance.now();
  const abort = new AbortController();
  const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), signal: abort.signal });
  const out: Outcome = { status: res.status, itl: [], latency: 0, tokens: 0 };
  if (!res.ok || !res.body) {
    await res.arrayBuffer();
    out.latency = performance.now() - t0;
    return out;
  }
  const decoder = new TextDecoder();
  let buf = '', last = 0, chunks = 0;
  try {
    for await (const bytes of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(bytes as Uint8Array, { stream: true });
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const line = buf.slice(0, end);
        buf = buf.slice(end + 2);
        if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
        const j = JSON.parse(line.slice(6));
        if (j.error) out.status = 500;
        if (j.usage) out.tokens = j.usage.completion_tokens;
        for (const c of j.choices ?? []) {
          const now = performance.now();
          if (out.ttft === undefined) out.ttft = now - t0;
          else out.itl.push(now - last);
          last = now;
          if (c.finish_reason) out.finish = c.finish_reason;
          if (cancelAfter !== undefined && ++chunks >= cancelAfter) {
            out.cancelled = true;
            abort.abort();
            return out;
          }
        }
      }
    }
  } catch (e) {
    if (!out.cancelled) throw e;
  }
  out.latency = performance.now() - t0;
  return out;
}

const pct = (xs: number[], p: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b), i = (s.length - 1) * p, lo = Math.floor(i);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (i - lo);
};
const r1 = (x: number) => Math.round(x * 10) / 10;
const stat = (xs: number[]) => ({ p50: r1(pct(xs, 0.5)), p99: r1(pct(xs, 0.99)) });

/** Prompt ids of request i: fixed length, different for each request (no cache could share them). */
function promptIds(config: GPT2Config, n: number, i: number): number[] {
  let x = (i + 1) * 2654435761;
  return Array.from({ length: n }, () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x % Math.min(config.vocabSize, 50000);
  });
}

/** Request i of a run: its own prompt, a fixed output length (ignore_eos), streamed with usage. */
const streamBody = (f: ServeBenchFlags, config: GPT2Config, i: number) => ({
  prompt: promptIds(config, f.promptTokens, i), max_tokens: f.newTokens, temperature: 1, seed: i, ignore_eos: true, stream: true, stream_options: { include_usage: true },
});

async function load(url: string, clients: number, requests: number, next: (i: number) => Promise<Outcome>): Promise<{ outcomes: Outcome[]; seconds: number }> {
  const outcomes: Outcome[] = [];
  let issued = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    while (issued < requests) {
      const i = issued++;
      outcomes[i] = await next(i);
    }
  }));
  return { outcomes, seconds: (performance.now() - t0) / 1000 };
}

async function run(f: ServeBenchFlags, config: GPT2Config, url: string, slots: number, clients: number) {
  const requests = f.requests ?? Math.max(8, 2 * clients);
  const body = (i: number) => streamBody(f, config, i);
  await load(url, Math.min(clients, slots), Math.min(clients, slots), (i) => streamOne(url, { ...body(1000 + i), max_tokens: 4 })); // warm-up
  const { outcomes, seconds } = await load(url, clients, requests, (i) => streamOne(url, body(i)));
  const bad = outcomes.filter((o) => o.status !== 200 || o.tokens !== f.newTokens);
  if (bad.length) throw new GPT2Error(`${bad.length} of ${requests} benchmark requests failed (status ${bad[0].status}, ${bad[0].tokens} tokens); see the server's messages.`);
  const tokens = outcomes.reduce((n, o) => n + o.tokens, 0);
  return {
    slots, concurrency: clients, requests, seconds: r1(seconds),
    requestsPerSecond: Math.round((requests / seconds) * 100) / 100,
    outputTokensPerSecond: r1(tokens / seconds),
    ttftMs: stat(outcomes.map((o) => o.ttft!)),
    tpotMs: stat(outcomes.map((o) => (o.latency - o.ttft!) / (o.tokens - 1))),
    itlMs: stat(outcomes.flatMap((o) => o.itl)),
  };
}

const MALFORMED = (config: GPT2Config): unknown[] => [
  '{"prompt": [1, 2, 3], "max_tokens": ',
  { prompt: [1, 2, 3], max_tokens: 4, temprature: 1 },
  { prompt: [1, 2, 3], max_tokens: 4, temperature: 9 },
  { prompt: [1, 2, 3], max_tokens: config.nPositions },
  { prompt: [config.vocabSize + 5], max_tokens: 4 },
];

async function soak(f: ServeBenchFlags, config: GPT2Config, server: Server) {
  const clients = f.concurrency[f.concurrency.length - 1], requests = f.requests ?? 2000;
  const body = (i: number) => streamBody(f, config, i);
  await load(server.url, clients, clients, (i) => streamOne(server.url, body(100_000 + i))); // warm-up: every slot used once
  const rssBefore = server.rssMB();
  const bad = MALFORMED(config);
  const { outcomes, seconds } = await load(server.url, clients, requests, (i) => {
    if (i % 10 === 3) return streamOne(server.url, bad[Math.floor(i / 10) % bad.length]); // a tenth malformed
    if (i % 10 === 7) return streamOne(server.url, body(i), 1 + (i % Math.max(1, f.newTokens - 1))); // a tenth cancelled mid-stream
    return streamOne(server.url, body(i));
  });
  await new Promise((r) => setTimeout(r, 1000));
  const rssAfter = server.rssMB();
  const valid = outcomes.filter((o, i) => i % 10 !== 3 && !o.cancelled);
  const malformed = outcomes.filter((_, i) => i % 10 === 3);
  return {
    soak: true, requests, concurrency: clients, seconds: r1(seconds),
    valid: valid.length,
    answeredInFull: valid.filter((o) => o.status === 200 && o.tokens === f.newTokens && o.finish === 'length').length,
    cancelled: outcomes.filter((o) => o.cancelled).length,
    malformed: malformed.length,
    malformedAnswered4xx: malformed.filter((o) => o.status >= 400 && o.status < 500).length,
    status5xx: outcomes.filter((o) => o.status >= 500).length,
    rssBeforeMB: rssBefore, rssAfterMB: rssAfter, rssChangePercent: r1(((rssAfter - rssBefore) / rssBefore) * 100),
  };
}

export async function benchServe(f: ServeBenchFlags): Promise<void> {
  const config = f.model ? (await readModel(f.model)).config : initConfig(f.init);
  if (f.promptTokens + f.newTokens > config.nPositions) throw new GPT2Error(`--prompt-tokens ${f.promptTokens} plus --new-tokens ${f.newTokens} pass the model's context of ${config.nPositions}.`);
  const head = { task: 'serve', backend: f.backend, weights: f.quantize ?? 'fp32', model: f.model ?? f.init, promptTokens: f.promptTokens, newTokens: f.newTokens };
  const print = (o: object) => process.stdout.write(JSON.stringify(o, null, f.json ? 0 : 2) + '\n');
  if (f.soak) {
    const server = await startServer(f, f.slots, 4 * f.concurrency[f.concurrency.length - 1]);
    try {
      const result = await soak(f, config, server);
      const exit = await server.stop();
      print({ ...head, slots: f.slots, ...result, serverExitCode: exit });
    } finally {
      server.child.kill('SIGKILL');
    }
    return;
  }
  const runs = [];
  const top = Math.max(...f.concurrency);
  if (f.url) {
    if (f.soak) throw new GPT2Error('--soak checks gpt2 serve itself; drop --url.');
    const url = f.url.replace(/\/+$/, '').replace(/\/v1$/, '');
    for (const c of f.concurrency) runs.push(await run(f, config, url, 0, c));
    print({ ...head, backend: undefined, weights: undefined, server: url, runs });
    return;
  }
  for (const slots of f.slots > 1 ? [f.slots, 1] : [1]) {
    const server = await startServer(f, slots, 4 * top);
    try {
      for (const c of slots === f.slots ? f.concurrency : [top]) {
        runs.push(await run(f, config, server.url, slots, c));
        process.stderr.write(`slots ${slots}, ${c} clients: ${runs[runs.length - 1].outputTokensPerSecond} output tokens/s\n`);
      }
      await server.stop();
    } finally {
      server.child.kill('SIGKILL');
    }
  }
  const batched = runs.find((r) => r.slots === f.slots && r.concurrency === top)!, single = runs.find((r) => r.slots === 1 && r.concurrency === top)!;
  print({ ...head, runs, batchingGain: Math.round((batched.outputTokensPerSecond / single.outputTokensPerSecond) * 100) / 100 });
}
