// Continuous batching: up to `slots` sequences share one KV cache (one row each) and decode in one
// step. Between steps, cancelled sequences leave (their row is freed) and waiting ones are
// prefilled into free rows, then join the next step. Each sequence keeps its own sampling state
// and RNG (core's SampleSequence), so its text for a seed does not depend on what it shares a step with.
import { GPT2Error, SampleSequence, samplingPlan, type GPT2, type KVCache, type SamplingPlan, type Tokenizer } from '@gpt2/core';
import { ApiError } from './errors.js';
import type { CompletionRequest } from './request.js';

export interface TokenLogprob {
  token: string;
  /** null for a prompt's first token (nothing predicts it). */
  logprob: number | null;
  top: Record<string, number> | null;
  offset: number; // characters into the choice's text (echoed prompt included)
}

/** What a request hears about each of its choices (index = prompt * n + choice). */
export interface ChoiceEvent {
  index: number;
  text: string;
  logprobs?: TokenLogprob[];
  /** Set on the choice's last event. */
  finishReason?: 'stop' | 'length';
  /** With finishReason: tokens generated (end-of-text and a stop text's tokens included). */
  generated?: number;
}

export interface RequestListener {
  event(e: ChoiceEvent): void;
  /** A token was sampled for one of the choices (time to first token, token counts). */
  sampled?(): void;
  /** The request failed (a backend error, or the server stopping); no event follows. */
  fail(err: ApiError): void;
}

export interface EngineOptions {
  /** Sequences decoded together (rows of the KV cache). */
  slots: number;
  /** Requests that may wait for a slot; past it, submit answers 429. */
  maxQueue: number;
}

interface Request {
  req: CompletionRequest;
  listener: RequestListener;
  plan: SamplingPlan;
  jobs: Job[];
  left: number; // choices not finished
  queued: number; // choices waiting for a slot
  over: boolean; // finished, failed or cancelled
}

interface Job {
  r: Request;
  index: number;
  prompt: Int32Array;
  seq: SampleSequence;
  slot: number; // -1 while waiting
  offset: number; // characters of text so far, for logprobs' text_offset
  pending: TokenLogprob[]; // logprobs not yet sent with text
}

export class Engine {
  private readonly cache: KVCache;
  private readonly rows: (Job | undefined)[];
  private readonly queue: Job[] = [];
  private waitingRequests = 0;
  private accepting = true;
  private stopped = false;
  private wake?: () => void;
  private idle?: () => void;
  private readonly done: Promise<void>;
  /** Decode steps run so far. */
  steps = 0;

  constructor(readonly model: GPT2, readonly tok: Tokenizer, readonly opts: EngineOptions) {
    if (!Number.isInteger(opts.slots) || opts.slots < 1) throw new GPT2Error(`--slots must be a whole number >= 1 (got ${opts.slots}).`);
    if (!Number.isInteger(opts.maxQueue) || opts.maxQueue < 0) throw new GPT2Error(`--max-queue must be a whole number >= 0 (got ${opts.maxQueue}).`);
    this.cache = model.createCache(opts.slots);
    this.rows = Array<Job | undefined>(opts.slots).fill(undefined);
    this.done = this.loop();
  }

  get busySlots(): number {
    return this.rows.filter((j) => j !== undefined).length;
  }

  get queueLength(): number {
    return this.waitingRequests;
  }

  /** Queues a request's choices; returns how to cancel it. Throws a 429 past the queue, a 503 when stopping. */
  submit(req: CompletionRequest, listener: RequestListener): { cancel(): void } {
    if (!this.accepting) throw new ApiError(503, 'The server is shutting down; send the request to another server or retry later.', 'service_unavailable');
    const free = this.rows.filter((j) => j === undefined).length - this.queue.length;
    if (this.waitingRequests >= this.opts.maxQueue && free < req.prompts.length * req.n) {
      throw new ApiError(429, `The server is busy: ${this.opts.slots === 1 ? 'its one slot is' : `all ${this.opts.slots} of its slots are`} taken and its queue (--max-queue ${this.opts.maxQueue}) is full; retry in a moment.`, 'rate_limit_error', null, 'queue_full');
    }
    const plan = samplingPlan(this.tok, req.sampling);
    const r: Request = { req, listener, plan, jobs: [], left: 0, queued: 0, over: false };
    req.prompts.forEach((prompt, p) => {
      for (let i = 0; i < req.n; i++) {
        r.jobs.push({ r, index: p * req.n + i, prompt, seq: new SampleSequence(plan, i, prompt, req.seed), slot: -1, offset: 0, pending: [] });
      }
    });
    r.left = r.queued = r.jobs.length;
    this.queue.push(...r.jobs);
    this.waitingRequests++;
    this.wake?.();
    return { cancel: () => this.end(r) };
  }

  /**
   * Stops taking requests; what is in flight finishes, or after graceMs is cancelled with a 503.
   * Resolves when the loop has stopped and the cache is freed.
   */
  async stop(graceMs: number): Promise<void> {
    this.accepting = false;
    if (this.queue.length > 0 || this.busySlots > 0) {
      const idle = new Promise<void>((res) => (this.idle = res));
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((res) => (timer = setTimeout(() => res('late'), graceMs)));
      if ((await Promise.race([idle, late])) === 'late') {
        for (const j of [...this.queue, ...this.rows]) if (j) this.end(j.r, new ApiError(503, 'The server stopped before this request finished; retry it on another server.', 'service_unavailable'));
      }
      clearTimeout(timer);
    }
    this.stopped = true;
    this.wake?.();
    await this.done;
  }

  /** Ends a request: its waiting choices leave the queue, its rows are freed before the next step. */
  private end(r: Request, err?: ApiError): void {
    if (r.over) return;
    r.over = true;
    if (r.queued > 0) this.waitingRequests--;
    for (const j of r.jobs) {
      const q = this.queue.indexOf(j);
      if (q >= 0) this.queue.splice(q, 1);
    }
    if (err) r.listener.fail(err);
    this.wake?.();
  }

  private async loop(): Promise<void> {
    try {
      while (!this.stopped) {
        this.reap();
        await this.admit();
        this.reap(); // a choice may end at its first token (max_tokens 1, a stop at once)
        if (this.rows.some((j) => j)) await this.step();
        else if (this.queue.length === 0) {
          this.idle?.();
          if (this.stopped) break;
          await new Promise<void>((res) => (this.wake = res));
          this.wake = undefined;
        }
        await new Promise((res) => setImmediate(res)); // requests, cancels and disconnects get in between steps
      }
    } finally {
      this.cache.dispose();
    }
  }

  /** Frees the rows of requests that ended (cancelled, failed). */
  private reap(): void {
    for (let s = 0; s < this.rows.length; s++) {
      const j = this.rows[s];
      if (j && (j.r.over || j.seq.done)) this.free(s);
    }
  }

  private free(slot: number): void {
    this.rows[slot] = undefined;
    this.cache.clearRow(slot);
  }

  /** Prefills waiting choices into free rows (lowest first, so a step reads the fewest rows). */
  private async admit(): Promise<void> {
    while (this.queue.length > 0) {
      const slot = this.rows.indexOf(undefined);
      if (slot < 0) return;
      const j = this.queue.shift()!;
      const r = j.r;
      if (--r.queued === 0) this.waitingRequests--;
      j.slot = slot;
      try {
        if (r.req.echo) this.echo(j, r.req.logprobs !== undefined ? await promptLogprobs(this.model, this.tok, j.prompt, r.req.logprobs) : undefined);
        if (r.req.maxTokens === 0) {
          this.emit(j, j.seq.finish(0, 'length'));
          continue;
        }
        this.rows[slot] = j; // a free row is empty: free() cleared it
        this.sample(j, await this.cache.feedRow(slot, j.prompt));
      } catch (err) {
        this.free(slot);
        this.end(r, serverError(err, 'prefilling the prompt'));
      }
      await new Promise((res) => setImmediate(res));
      this.reap();
    }
  }

  /** One decode step for every busy row. */
  private async step(): Promise<void> {
    const B = this.rows.length, V = this.model.config.vocabSize;
    const tokens = new Int32Array(B), active = this.rows.map((j) => j !== undefined);
    this.rows.forEach((j, s) => {
      if (j) tokens[s] = j.seq.ids[j.seq.ids.length - 1];
    });
    const stepping = this.rows.filter((j): j is Job => j !== undefined);
    let logits: Float32Array;
    try {
      logits = await this.cache.step(tokens, active);
    } catch (err) {
      // the requests in this step fail; the cache rows are reset and the server goes on
      const e = serverError(err, 'a decode step');
      for (const j of stepping) {
        this.free(j.slot);
        this.end(j.r, e);
      }
      return;
    }
    for (const j of stepping) if (!j.r.over) this.sample(j, logits.subarray(j.slot * V, (j.slot + 1) * V));
    this.steps++;
  }

  /** Picks a row's next token and tells the request. */
  private sample(j: Job, row: Float32Array): void {
    if (j.r.over || j.seq.done) return;
    const k = j.r.req.logprobs;
    const raw = k === undefined ? undefined : Float32Array.from(row); // the processors edit row in place
    const { id, event } = j.seq.next(row);
    j.r.listener.sampled?.();
    if (raw) {
      const lp = tokenLogprob(this.tok, raw, id, k!, j.offset);
      j.offset += lp.token.length;
      j.pending.push(lp);
    }
    if (event) this.emit(j, event);
  }

  private echo(j: Job, lps?: TokenLogprob[]): void {
    const text = j.r.req.promptTexts[Math.floor(j.index / j.r.req.n)];
    j.offset = text.length;
    j.r.listener.event({ index: j.index, text, logprobs: lps });
  }

  private emit(j: Job, e: { text: string; done: boolean }): void {
    const out: ChoiceEvent = { index: j.index, text: e.text };
    if (j.r.req.logprobs !== undefined) out.logprobs = j.pending.splice(0);
    if (e.done) {
      out.finishReason = j.seq.finishReason;
      out.generated = j.seq.generated.length;
    }
    j.r.listener.event(out);
    if (e.done && --j.r.left === 0) j.r.over = true;
  }
}

function serverError(err: unknown, during: string): ApiError {
  const why = err instanceof Error ? err.message : String(err);
  return new ApiError(500, `The model failed during ${during} (${why.replace(/\.$/, '')}); this request was stopped and the server goes on serving.`, 'server_error');
}

/** log softmax of a raw logits row at `id`, and the k most likely tokens. */
function tokenLogprob(tok: Tokenizer, row: Float32Array, id: number, k: number, offset: number): TokenLogprob {
  let max = -Infinity;
  for (const x of row) if (x > max) max = x;
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  const lse = max + Math.log(sum);
  let top: Record<string, number> | null = null;
  if (k > 0) {
    const best: number[] = [];
    for (let i = 0; i < row.length; i++) {
      if (best.length < k || row[i] > row[best[best.length - 1]]) {
        best.push(i);
        best.sort((a, b) => row[b] - row[a] || a - b);
        if (best.length > k) best.pop();
      }
    }
    top = {};
    for (const i of best) top[tok.decode([i])] = row[i] - lse;
  }
  return { token: tok.decode([id]), logprob: row[id] - lse, top, offset };
}

/** The prompt's own logprobs (echo with logprobs): one forward pass over it, first token null. */
async function promptLogprobs(model: GPT2, tok: Tokenizer, prompt: Int32Array, k: number): Promise<TokenLogprob[]> {
  const T = prompt.length, V = model.config.vocabSize;
  await model.forward(prompt, 1, T);
  const logits = await model.logits();
  model.freeActivations();
  const out: TokenLogprob[] = [];
  let offset = 0;
  for (let t = 0; t < T; t++) {
    const token = tok.decode([prompt[t]]);
    if (t === 0) out.push({ token, logprob: null, top: null, offset });
    else out.push({ ...tokenLogprob(tok, logits.subarray((t - 1) * V, t * V), prompt[t], k, offset), token });
    offset += token.length;
  }
  return out;
}
