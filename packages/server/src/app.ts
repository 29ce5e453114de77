// The HTTP side: fastify routes speaking OpenAI's completions API over the Engine.
//   POST /v1/completions   (JSON or, with stream: true, server-sent events ended by `data: [DONE]`)
//   GET  /v1/models, GET /health (503 while the model loads), GET /metrics (Prometheus)
import { randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { GPT2, Tokenizer } from '@gpt2/core';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { Engine, type ChoiceEvent, type TokenLogprob } from './engine.js';
import { ApiError } from './errors.js';
import { createMetrics, type ServerMetrics } from './metrics.js';
import { parseCompletion, type CompletionRequest } from './request.js';

export interface ServerOptions {
  /** The id clients name in `model` and /v1/models lists. */
  modelId: string;
  /** Sequences decoded together (default 8). */
  slots?: number;
  /** Requests that may wait for a slot before 429 (default 64). */
  maxQueue?: number;
  /** When set, every route but /health wants `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Largest request body in bytes (default 1 MiB). */
  bodyLimit?: number;
}

type State = 'loading' | 'ready' | 'stopping';

interface Choice {
  text: string;
  logprobs: TokenLogprob[] | null;
  finishReason: 'stop' | 'length' | null;
  generated: number;
}

/** A completions server: `app` is the fastify instance (listen on it, or inject into it); `attach` gives it its model. */
export class CompletionServer {
  readonly app: FastifyInstance;
  readonly metrics: ServerMetrics;
  private engine?: Engine;
  private model?: GPT2;
  private tok?: Tokenizer;
  private state: State = 'loading';
  private readonly created = Math.floor(Date.now() / 1000);

  constructor(readonly opts: ServerOptions) {
    this.metrics = createMetrics({ queueLength: () => this.engine?.queueLength ?? 0, busySlots: () => this.engine?.busySlots ?? 0, slots: opts.slots ?? 8 });
    this.app = Fastify({ bodyLimit: opts.bodyLimit ?? 1 << 20, logger: false, forceCloseConnections: 'idle', return503OnClosing: true });
    this.app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
      const text = body as string;
      if (text.trim() === '') return done(new ApiError(400, 'The request body is empty; send a JSON object with at least a prompt.', 'invalid_request_error', null, 'invalid_json'));
      try {
        done(null, JSON.parse(text));
      } catch (err) {
        done(new ApiError(400, `The request body is not valid JSON (${(err as Error).message}).`, 'invalid_request_error', null, 'invalid_json'));
      }
    });
    this.routes();
  }

  /** The model is loaded: /health turns 200 and completions are served. */
  attach(model: GPT2, tok: Tokenizer): void {
    this.model = model;
    this.tok = tok;
    this.engine = new Engine(model, tok, { slots: this.opts.slots ?? 8, maxQueue: this.opts.maxQueue ?? 64 });
    this.state = 'ready';
  }

  /** Engine figures, for tests and the CLI's last line. */
  get stats(): { busySlots: number; queueLength: number; steps: number } {
    return { busySlots: this.engine?.busySlots ?? 0, queueLength: this.engine?.queueLength ?? 0, steps: this.engine?.steps ?? 0 };
  }

  /**
   * Stops accepting requests (503 from now on), lets those in flight finish, cancelling what is
   * left after graceMs, and closes every connection.
   */
  async close(graceMs = 30_000): Promise<void> {
    if (this.state === 'stopping') return;
    this.state = 'stopping';
    const closing = this.app.close();
    await this.engine?.stop(graceMs);
    await new Promise((res) => setTimeout(res, 50)); // the last responses' bytes leave
    this.app.server.closeAllConnections();
    await closing;
  }

  private routes(): void {
    const app = this.app;
    app.addHook('onRequest', async (req, reply) => {
      const key = this.opts.apiKey;
      if (!key || req.url === '/health') return;
      const got = Buffer.from(req.headers.authorization ?? ''), want = Buffer.from(`Bearer ${key}`);
      if (got.length !== want.length || !timingSafeEqual(got, want)) {
        reply.header('www-authenticate', 'Bearer');
        throw new ApiError(401, 'This server wants an API key: send the header Authorization: Bearer <key>, with the key it was started with.', 'authentication_error', null, 'invalid_api_key');
      }
    });
    app.setErrorHandler(async (err: FastifyError | ApiError, req, reply) => {
      const e = apiErrorOf(err);
      if (e.status === 429) reply.header('retry-after', '1');
      this.metrics.requests.inc({ status: String(e.status) });
      if (e.status === 413) {
        // a client still sending would see its connection reset (EPIPE) before reading the answer:
        // read and discard the rest of the body first, up to a bound, as nginx's lingering close
        await drain(req.raw, DRAIN_BYTES, DRAIN_MS);
        reply.header('connection', 'close');
      }
      return reply.code(e.status).send(e.body);
    });
    app.setNotFoundHandler((req, reply) => {
      reply.code(404).send(new ApiError(404, `There is no ${req.method} ${req.url.split('?')[0]} here; this server answers POST /v1/completions, GET /v1/models, GET /health and GET /metrics.`, 'not_found_error').body);
    });

    app.get('/health', async (_req, reply) => {
      if (this.state !== 'ready') return reply.code(503).send({ status: this.state });
      return { status: 'ok' };
    });
    app.get('/metrics', async (_req, reply) => {
      reply.header('content-type', this.metrics.registry.contentType);
      return this.metrics.registry.metrics();
    });
    app.get('/v1/models', async () => ({
      object: 'list',
      data: [{ id: this.opts.modelId, object: 'model', created: this.created, owned_by: 'gpt2.ts' }],
    }));
    app.post('/v1/chat/completions', async () => {
      throw new ApiError(404, 'GPT-2 has no chat template, so this server has no chat completions; send a prompt to POST /v1/completions instead.', 'not_found_error', null, 'unsupported_endpoint');
    });
    app.post('/v1/completions', async (request, reply) => this.complete(request.body, reply));
  }

  private async complete(body: unknown, reply: FastifyReply): Promise<unknown> {
    const t0 = performance.now();
    if (this.state === 'loading') throw new ApiError(503, 'The model is still loading; retry when GET /health answers 200.', 'service_unavailable');
    if (this.state === 'stopping' || !this.engine) throw new ApiError(503, 'The server is shutting down; send the request to another server or retry later.', 'service_unavailable');
    const cfg = this.model!.config;
    const req = parseCompletion(body, { modelId: this.opts.modelId, nPositions: cfg.nPositions, vocabSize: cfg.vocabSize, tok: this.tok! });
    const head = { id: `cmpl-${randomUUID().replaceAll('-', '')}`, object: 'text_completion', created: Math.floor(Date.now() / 1000), model: this.opts.modelId };
    const choices: Choice[] = Array.from({ length: req.prompts.length * req.n }, () => ({ text: '', logprobs: req.logprobs === undefined ? null : [], finishReason: null, generated: 0 }));
    const promptTokens = req.prompts.reduce((n, p) => n + p.length, 0);
    const usage = () => {
      const completion = choices.reduce((n, c) => n + c.generated, 0);
      return { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion };
    };
    const m = this.metrics;
    let first = true, left = choices.length;
    const sampled = () => {
      if (first) m.timeToFirstToken.observe((performance.now() - t0) / 1000);
      first = false;
      m.generationTokens.inc();
    };
    const finished = (status: number) => {
      m.requests.inc({ status: String(status) });
      m.requestSeconds.observe((performance.now() - t0) / 1000);
    };

    if (!req.stream) {
      return new Promise((resolve, reject) => {
        const handle = this.engine!.submit(req, {
          sampled,
          event: (e) => {
            const c = choices[e.index];
            c.text += e.text;
            if (e.logprobs) c.logprobs!.push(...e.logprobs);
            if (e.finishReason) {
              c.finishReason = e.finishReason;
              c.generated = e.generated!;
              if (--left === 0) {
                finished(200);
                resolve({ ...head, choices: choices.map((c, i) => choiceJson(c, i)), usage: usage() });
              }
            }
          },
          fail: reject,
        });
        m.promptTokens.inc(promptTokens);
        reply.raw.on('close', () => {
          if (left === 0) return;
          handle.cancel(); // the client went away: its slots free before the next step
          reject(new ApiError(499, 'The client closed the connection before the completion was done.'));
        });
      });
    }

    // stream: server-sent events, one chunk per piece of text, usage last when asked, then [DONE]
    const raw = reply.raw;
    const send = (data: unknown) => {
      if (!raw.writableEnded && !raw.destroyed) raw.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    };
    const chunk = (choice: object) => ({ ...head, choices: [choice], ...(req.includeUsage ? { usage: null } : {}) });
    const end = (status: number) => {
      finished(status);
      send('[DONE]');
      raw.end();
    };
    const listener = {
      sampled,
      event: (e: ChoiceEvent) => {
        const c = choices[e.index];
        if (e.finishReason) {
          c.finishReason = e.finishReason;
          c.generated = e.generated!;
        }
        send(chunk(choiceJson({ ...c, text: e.text, logprobs: e.logprobs ?? null }, e.index)));
        if (e.finishReason && --left === 0) {
          if (req.includeUsage) send({ ...head, choices: [], usage: usage() });
          end(200);
        }
      },
      fail: (err: ApiError) => {
        send(err.body);
        end(err.status);
      },
    };
    const handle = this.engine.submit(req, listener); // a 429 or 503 throws before any header is sent; events come from later steps
    m.promptTokens.inc(promptTokens);
    reply.hijack();
    raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
    raw.on('close', () => {
      if (left === 0 || raw.writableEnded) return;
      handle.cancel(); // the client went away: its slots free before the next step
      finished(499);
    });
    return reply;
  }
}

function choiceJson(c: Choice, index: number) {
  const lp = c.logprobs && {
    tokens: c.logprobs.map((x) => x.token),
    token_logprobs: c.logprobs.map((x) => x.logprob),
    top_logprobs: c.logprobs.map((x) => x.top),
    text_offset: c.logprobs.map((x) => x.offset),
  };
  return { text: c.text, index, logprobs: lp ?? null, finish_reason: c.finishReason };
}

// how much of a body past the limit the server reads (and drops) before its 413, and for how long
const DRAIN_BYTES = 256 << 20, DRAIN_MS = 30_000;

/** Reads a request's remaining body and drops it, until its end, `bytes` read or `ms` passed. */
function drain(raw: IncomingMessage, bytes: number, ms: number): Promise<void> {
  if (raw.complete || raw.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let seen = 0;
    const done = () => {
      clearTimeout(timer);
      raw.off('data', onData).off('end', done).off('close', done).off('error', done);
      raw.pause();
      resolve();
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > bytes) done();
    };
    const timer = setTimeout(done, ms);
    raw.on('data', onData).once('end', done).once('close', done).once('error', done);
    raw.resume();
  });
}

/** Fastify's own errors (bad JSON, a body too large, ...) as OpenAI-shaped sentences. */
function apiErrorOf(err: FastifyError | ApiError): ApiError {
  if (err instanceof ApiError) return err;
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(413, 'The request body is larger than this server accepts; send a shorter prompt (the limit is set with --max-body).', 'invalid_request_error', null, 'body_too_large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(415, 'Send the request body as JSON with the header Content-Type: application/json.', 'invalid_request_error', null, 'unsupported_media_type');
  }
  const status = typeof err.statusCode === 'number' && err.statusCode >= 400 ? err.statusCode : 500;
  return new ApiError(status, status >= 500 ? `The server failed: ${err.message}` : err.message, status >= 500 ? 'server_error' : 'invalid_request_error');
}

/** A server for `opts`: listen with `server.app.listen(...)`, then `attach` the model when it has loaded. */
export function createServer(opts: ServerOptions): CompletionServer {
  return new CompletionServer(opts);
}

export type { CompletionRequest };
