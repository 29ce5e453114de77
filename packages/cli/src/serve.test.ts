// gpt2 serve as a user runs it: a real process on loopback, the openai client, the same text as
// gpt2 generate for a seed while other requests share its steps, and SIGTERM's graceful exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, FIXTURES, gpt2, ROOT } from './test/cli.js';

const MODEL = join(FIXTURES, 'gpt2-tiny');
let child: ChildProcess | undefined;
afterEach(() => {
  child?.kill('SIGKILL');
  child = undefined;
});

/** Starts gpt2 serve on a free port; resolves with its URL once /health answers 200. */
async function serve(args: string[]): Promise<{ url: string; stderr: () => string; exit: Promise<number | null> }> {
  const c = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], { cwd: ROOT });
  child = c;
  let err = '';
  const exit = new Promise<number | null>((res) => c.on('exit', (code) => res(code)));
  const url = await new Promise<string>((res, rej) => {
    c.stderr.setEncoding('utf8').on('data', (s: string) => {
      err += s;
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m) res(m[1]);
    });
    void exit.then((code) => rej(new Error(`gpt2 serve exited ${code}: ${err}`)));
  });
  for (let i = 0; i < 300 && !(await fetch(`${url}/health`).then((r) => r.ok, () => false)); i++) await new Promise((r) => setTimeout(r, 100));
  return { url, stderr: () => err, exit };
}

const knobs = { temperature: 1, top_k: 40, max_tokens: 16 };
const prompts = ['Once upon a time', 'The meaning of life is', 'Hello'];

describe('gpt2 serve', () => {
  it('a seed gives gpt2 generate\'s text while other requests share the steps; SIGTERM lets a request finish and exits 0', async () => {
    const want = await Promise.all(prompts.map(async (p, i) => {
      const r = await gpt2(['generate', '--model', MODEL, '--backend', 'cpu', '--prompt', p, '--seed', String(40 + i), '--temperature', '1', '--top-k', '40', '--max-new-tokens', '16', '--json']);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout).samples[0].text as string;
    }));
    const s = await serve(['--model', MODEL, '--backend', 'cpu', '--slots', '3', '--model-name', 'tiny']);
    expect(s.stderr()).toMatch(/ready: tiny on cpu, 3 slots, context 64/);
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'none', maxRetries: 0 });
    const got = await Promise.all(prompts.map((p, i) => client.completions.create({ model: 'tiny', prompt: p, seed: 40 + i, ...knobs })));
    expect(got.map((r) => r.choices[0].text)).toEqual(want);

    const inflight = client.completions.create({ model: 'tiny', prompt: 'Hello', max_tokens: 40, temperature: 0, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    await new Promise((r) => setTimeout(r, 20));
    child!.kill('SIGTERM');
    const done = await inflight;
    expect(done.usage!.completion_tokens).toBe(40);
    expect(await s.exit).toBe(0);
    expect(s.stderr()).toMatch(/SIGTERM: no new requests; finishing those in flight \(up to 30 s\)\nstopped\n$/);
  });

  it('a body past --max-body gets its 413 while the client is still sending it (fetch and the openai client, 20 MB)', async () => {
    const { url } = await serve(['--model', MODEL, '--max-body', '65536']);
    const body = JSON.stringify({ prompt: 'x'.repeat(20 << 20) });
    const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(r.status).toBe(413);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('body_too_large');
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
    const err = await client.completions.create({ model: 'gpt2-tiny', prompt: 'x'.repeat(20 << 20) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(413);
    // and the server goes on serving
    expect((await fetch(`${url}/health`)).status).toBe(200);
  });

  it('warns when it listens past loopback without a key; bad flags are usage errors', async () => {
    const s = await serve(['--model', MODEL, '--backend', 'reference', '--host', '0.0.0.0']);
    expect(s.stderr()).toContain('warning: listening on 0.0.0.0 without --api-key: anyone who can reach this address can use the model; pass --api-key (or set GPT2_API_KEY).');
    child!.kill('SIGINT');
    expect(await s.exit).toBe(0);
    const bad = await gpt2(['serve', '--model', MODEL, '--slots', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--slots <n>' argument '0' is invalid\. must be a whole number >= 1\./);
  });
});
