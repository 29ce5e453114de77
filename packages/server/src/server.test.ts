// The server against the official openai client (v7), on the gpt2-tiny fixture and the reference
// backend: the API's shapes, continuous batching's same-seed guarantee, errors, load and shutdown.
import type { AddressInfo } from 'node:net';
import { createReferenceBackend, generate, GPT2, type Tokenizer } from '@gpt2/core';
import { loadFixture } from '@gpt2/core/conformance';
import { loadTokenizerDir } from '@gpt2/core/node';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type CompletionServer, type ServerOptions } from './index.js';

let model: GPT2;
let tok: Tokenizer;
const servers: CompletionServer[] = [];
const MODEL = 'tiny';

beforeAll(async () => {
  const f = loadFixture('gpt2-tiny');
  model = new GPT2(createReferenceBackend(), f.config, f.params);
  tok = await loadTokenizerDir(f.dir);
});
afterAll(async () => {
  for (const s of servers) await s.close(0);
});

async function start(o: Partial<ServerOptions> = {}, attach = true): Promise<{ server: CompletionServer; url: string; client: OpenAI }> {
  const server = createServer({ modelId: MODEL, slots: 4, ...o });
  servers.push(server);
  await server.app.listen({ host: '127.0.0.1', port: 0 });
  if (attach) server.attach(model, tok);
  const url = `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`;
  return { server, url, client: new OpenAI({ baseURL: `${url}/v1`, apiKey: o.apiKey ?? 'none', maxRetries: 0 }) };
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });

const sampling = { temperature: 1, top_k: 40, seed: 11, max_tokens: 12 };
const generated = async (prompt: string, seed: number, n = 1) =>
  (await generate(model, tok, tok.encode(prompt, { specials: true }), { temperature: 1, topK: 40, seed, maxNewTokens: 12, nsamples: n })).samples.map((s) => s.text);

describe('gpt2 serve: OpenAI completions', () => {
  it('answers the openai client, streaming and not, in OpenAI shapes with usage', async () => {
    const { client } = await start();
    const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', ...sampling });
    expect(r.object).toBe('text_completion');
    expect(r.id).toMatch(/^cmpl-/);
    expect(r.model).toBe(MODEL);
    expect(r.choices[0].finish_reason).toBe('length');
    expect(r.usage).toEqual({ prompt_tokens: 4, completion_tokens: 12, total_tokens: 16 });
    expect(r.choices[0].text).toBe((await generated('Once upon a time', 11))[0]);

    const stream = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', ...sampling, stream: true, stream_options: { include_usage: true } });
    let text = '', chunks = 0, usage, finish;
    for await (const c of stream) {
      if (c.usage) usage = c.usage;
      for (const ch of c.choices) {
        text += ch.text;
        chunks++;
        finish = ch.finish_reason ?? finish;
      }
    }
    expect(text).toBe(r.choices[0].text);
    expect(chunks).toBeGreaterThan(3);
    expect(finish).toBe('length');
    expect(usage).toEqual(r.usage);
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
  });

  it('a seed gives the same text alone, batched with other requests, and from generate()', async () => {
    const prompts = ['Once upon a time', 'The meaning of life is', 'Hello', 'In the beginning'];
    const want = await Promise.all(prompts.map((p, i) => generated(p, 100 + i, 2)));
    for (const slots of [1, 4]) {
      const { client } = await start({ slots });
      // eight choices from four requests at once: with 4 slots they share steps, join and leave at different positions
      const got = await Promise.all(prompts.map((p, i) => client.completions.create({ model: MODEL, prompt: p, ...sampling, seed: 100 + i, n: 2 })));
      expect(got.map((r) => r.choices.map((c) => c.text))).toEqual(want);
    }
  });

  it('stop strings end a choice without appearing in it; n, several prompts, echo and logprobs', async () => {
    const { client } = await start();
    const free = (await client.completions.create({ model: MODEL, prompt: 'Once upon a time', ...sampling })).choices[0].text;
    const stop = free.slice(4, 7);
    const cut = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', ...sampling, stop: [stop, 'zzzz'] });
    expect(cut.choices[0].text).toBe(free.slice(0, free.indexOf(stop)));
    expect(cut.choices[0].finish_reason).toBe('stop');

    const many = await client.completions.create({ model: MODEL, prompt: [[7454, 2402], [15496]], n: 2, ...sampling });
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(many.choices[3].text).toBe((await generated('Hello', 11, 2))[1]);

    // choices that end at their first token leave before the next step
    const one = await client.completions.create({ model: MODEL, prompt: 'Hello', max_tokens: 1, n: 3, seed: 5 });
    expect(one.choices.map((c) => c.finish_reason)).toEqual(['length', 'length', 'length']);
    expect(one.usage!.completion_tokens).toBe(3);

    const lp = await client.completions.create({ model: MODEL, prompt: 'Hello world', max_tokens: 3, temperature: 0, echo: true, logprobs: 2 });
    const l = lp.choices[0].logprobs!;
    expect(lp.choices[0].text.startsWith('Hello world')).toBe(true);
    expect(l.tokens!.length).toBe(2 + 3);
    expect(l.token_logprobs![0]).toBeNull();
    expect(l.text_offset).toEqual([0, 5, 11, 11 + l.tokens![2].length, 11 + l.tokens![2].length + l.tokens![3].length]);
    // greedy: the chosen token is the most likely one, and its logprob is the top entry's
    for (let i = 2; i < 5; i++) {
      const top = Object.entries(l.top_logprobs![i]!);
      expect(top.length).toBe(2);
      expect(l.token_logprobs![i]).toBeCloseTo(Math.max(...top.map(([, v]) => v)), 6);
      expect(l.token_logprobs![i]!).toBeLessThan(0);
    }
  });

  it('answers mistakes with 4xx in OpenAI error shape, one sentence each', async () => {
    const { url } = await start({ bodyLimit: 4096 });
    const cases: [unknown, number, RegExp][] = [
      ['{"prompt": "Hi",', 400, /^The request body is not valid JSON \(/],
      [{ prompt: 'Hi', temprature: 1 }, 400, /^Unknown field 'temprature'/],
      [{ prompt: 'Hi', temperature: 3 }, 400, /^temperature must be a number from 0 to 2 \(got 3\)\.$/],
      [{ prompt: 'Hi', max_tokens: 64 }, 400, /^This model's context is 64 tokens; the prompt has 1 and max_tokens asks for 64 more: shorten the prompt or lower max_tokens to at most 63\.$/],
      [{ prompt: 'Hi', logprobs: 6 }, 400, /^logprobs must be a whole number from 0 to 5/],
      [{ prompt: 'Hi', stop: ['a', 'b', 'c', 'd', 'e'] }, 400, /^stop may hold at most 4 strings/],
      [{ prompt: [1, 99999] }, 400, /^prompt holds 99999, not a token id/],
      [{ max_tokens: 3 }, 400, /^prompt is required/],
      [{ prompt: 'Hi', suffix: '!' }, 400, /^suffix is not supported/],
      [{ prompt: 'Hi', stream_options: { include_usage: true } }, 400, /^stream_options is only allowed with stream: true\.$/],
      [{ prompt: 'Hi', model: 'gpt-4' }, 404, /^The model 'gpt-4' does not exist here; this server serves 'tiny'\.$/],
      [{ prompt: 'x'.repeat(5000) }, 413, /^The request body is larger than this server accepts/],
    ];
    for (const [body, status, words] of cases) {
      const r = await post(url, body);
      const j = (await r.json()) as { error: { message: string; type: string; param: string | null; code: string | null } };
      expect(r.status, JSON.stringify(body).slice(0, 60)).toBe(status);
      expect(Object.keys(j.error).sort()).toEqual(['code', 'message', 'param', 'type']);
      expect(j.error.message).toMatch(words);
    }
    const chat = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(chat.status).toBe(404);
    expect(((await chat.json()) as { error: { message: string } }).error.message).toMatch(/GPT-2 has no chat template/);
  });

  it('wants the API key on every route but /health; /health is 503 until the model is attached', async () => {
    const { server, url, client } = await start({ apiKey: 'sekret' }, false);
    expect((await fetch(`${url}/health`)).status).toBe(503);
    server.attach(model, tok);
    expect((await fetch(`${url}/health`)).status).toBe(200);
    expect((await fetch(`${url}/v1/models`)).status).toBe(401);
    expect((await post(url, { prompt: 'Hi' }, { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await client.completions.create({ model: MODEL, prompt: 'Hi', max_tokens: 2 })).choices).toHaveLength(1);
    const metrics = await (await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer sekret' } })).text();
    for (const name of ['gpt2_requests_total', 'gpt2_generation_tokens_total', 'gpt2_prompt_tokens_total', 'gpt2_time_to_first_token_seconds', 'gpt2_queue_length', 'gpt2_busy_slots']) {
      expect(metrics).toContain(name);
    }
  });

  it('past the queue answers 429 with Retry-After, which the openai client honours', async () => {
    const { url } = await start({ slots: 1, maxQueue: 0 });
    const long = post(url, { prompt: 'Hi', max_tokens: 40, temperature: 0 });
    await new Promise((r) => setTimeout(r, 50));
    const busy = await post(url, { prompt: 'Hi', max_tokens: 2 });
    expect(busy.status).toBe(429);
    expect(busy.headers.get('retry-after')).toBe('1');
    expect(((await busy.json()) as { error: { type: string; message: string } }).error).toMatchObject({ type: 'rate_limit_error', message: 'The server is busy: its one slot is taken and its queue (--max-queue 0) is full; retry in a moment.' });
    const retrying = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 5 });
    const r = await retrying.completions.create({ model: MODEL, prompt: 'Hi', max_tokens: 2 });
    expect(r.choices[0].finish_reason).toBeDefined();
    expect((await long).status).toBe(200);
  });

  it('a client that goes away mid-stream frees its slot within one decode step', async () => {
    const { server, client } = await start({ slots: 2 });
    let closedAt = -1; // decode steps run when the server saw the connection close
    server.app.server.on('request', (_req, res) => res.on('close', () => (closedAt = server.stats.steps)));
    const abort = new AbortController();
    const stream = await client.completions.create({ model: MODEL, prompt: 'Hi', max_tokens: 60, temperature: 0, stream: true }, { signal: abort.signal });
    let seen = 0;
    try {
      for await (const _ of stream) if (++seen === 3) abort.abort();
    } catch {
      // the client's own abort
    }
    expect(seen).toBe(3);
    for (let i = 0; i < 200 && server.stats.busySlots > 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(server.stats.busySlots).toBe(0);
    expect(closedAt).toBeGreaterThanOrEqual(0);
    expect(server.stats.steps - closedAt).toBeLessThanOrEqual(1); // at most the step already under way
    expect(server.stats.steps).toBeLessThan(59);
  });

  it('a backend error fails the requests of that step with a 500 sentence, and the server goes on', async () => {
    const { client } = await start();
    const kernels = model.backend.kernels, real = kernels.attentionDecode;
    let calls = 0;
    kernels.attentionDecode = (...a) => {
      if (++calls === 30) throw new Error('device lost');
      return real.apply(kernels, a);
    };
    try {
      const err = await client.completions.create({ model: MODEL, prompt: 'Hi', max_tokens: 20 }).catch((e) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect(err.status).toBe(500);
      expect(err.error.message).toMatch(/^The model failed during a decode step \(device lost\); this request was stopped and the server goes on serving\.$/);
    } finally {
      kernels.attentionDecode = real;
    }
    const ok = await client.completions.create({ model: MODEL, prompt: 'Hi', ...sampling });
    expect(ok.choices[0].text).toBe((await generated('Hi', 11))[0]);
  });

  it('close() lets requests in flight finish, refuses new ones, and cancels what outlives the grace period', async () => {
    const { server, url } = await start();
    const inflight = post(url, { prompt: 'Hi', max_tokens: 30, temperature: 0 });
    await new Promise((r) => setTimeout(r, 30));
    const closed = server.close(10_000);
    const r = await inflight;
    expect(r.status).toBe(200);
    expect(((await r.json()) as { choices: { finish_reason: string }[] }).choices[0].finish_reason).toBe('length');
    await closed;
    await expect(post(url, { prompt: 'Hi' })).rejects.toThrow();

    const { server: s2, url: u2 } = await start();
    const cut = post(u2, { prompt: 'Hi', max_tokens: 60, temperature: 0 });
    await new Promise((r) => setTimeout(r, 30));
    await s2.close(0);
    const c = await cut;
    expect(c.status).toBe(503);
    expect(((await c.json()) as { error: { message: string } }).error.message).toMatch(/^The server stopped before this request finished/);
  });
});
