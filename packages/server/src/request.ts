// POST /v1/completions bodies: OpenAI's fields, checked one by one into a CompletionRequest, or a
// 400 naming the field in one sentence. The project's own sampler knobs ride along as extra fields.
import type { GenerateOptions, Tokenizer } from '@gpt2/core';
import { ApiError, badField } from './errors.js';

export interface CompletionRequest {
  /** Each prompt as token ids (an empty prompt starts from end-of-text, as `gpt2 generate` does). */
  prompts: Int32Array[];
  /** The prompts' text, for echo. */
  promptTexts: string[];
  n: number;
  maxTokens: number;
  seed: number;
  echo: boolean;
  /** Alternatives listed per token (0 = the chosen token's logprob only); undefined = no logprobs. */
  logprobs?: number;
  stream: boolean;
  includeUsage: boolean;
  /** Sampling for every choice; seed is per request, choice i uses (seed, i) as `gpt2 generate --nsamples`. */
  sampling: GenerateOptions;
}

const KNOWN = new Set([
  'model', 'prompt', 'max_tokens', 'temperature', 'top_p', 'n', 'stop', 'seed', 'echo', 'logprobs', 'stream',
  'stream_options', 'presence_penalty', 'frequency_penalty', 'user',
  'top_k', 'min_p', 'repetition_penalty', 'no_repeat_ngram_size', 'ignore_eos',
]);
const UNSUPPORTED: Record<string, string> = {
  suffix: 'suffix is not supported: GPT-2 cannot fill in the middle; send the prefix as the prompt.',
  best_of: 'best_of is not supported; ask for n choices and pick among them.',
  logit_bias: 'logit_bias is not supported by this server; use stop, top_k or the penalties instead.',
};
export const MAX_CHOICES = 64;

/** Parses and checks a completions body against the served model (its id, context and tokenizer). */
export function parseCompletion(body: unknown, ctx: { modelId: string; nPositions: number; vocabSize: number; tok: Tokenizer }): CompletionRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'The request body must be a JSON object with at least a prompt.');
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b)) {
    if (UNSUPPORTED[key] !== undefined && b[key] !== null && b[key] !== undefined) throw badField(key, UNSUPPORTED[key], 'unsupported_parameter');
    if (!KNOWN.has(key) && UNSUPPORTED[key] === undefined) throw badField(key, `Unknown field '${key}'; see the README for the fields this server accepts.`, 'unknown_parameter');
  }
  const get = (k: string) => (b[k] === null ? undefined : b[k]);
  const num = (k: string, min: number, max: number, dflt: number, what = `a number from ${min} to ${max}`): number => {
    const v = get(k);
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw badField(k, `${k} must be ${what} (got ${JSON.stringify(v)}).`);
    return v;
  };
  const int = (k: string, min: number, max: number, dflt: number, what?: string): number => {
    const v = num(k, min, max, dflt, what ?? `a whole number from ${min} to ${max}`);
    if (!Number.isInteger(v)) throw badField(k, `${k} must be ${what ?? `a whole number from ${min} to ${max}`} (got ${v}).`);
    return v;
  };
  const bool = (k: string): boolean => {
    const v = get(k);
    if (v === undefined) return false;
    if (typeof v !== 'boolean') throw badField(k, `${k} must be true or false (got ${JSON.stringify(v)}).`);
    return v;
  };

  const model = get('model');
  if (model !== undefined && model !== ctx.modelId) {
    throw new ApiError(404, `The model '${String(model)}' does not exist here; this server serves '${ctx.modelId}'.`, 'not_found_error', 'model', 'model_not_found');
  }
  const { prompts, promptTexts } = parsePrompts(b.prompt, ctx);
  const n = int('n', 1, MAX_CHOICES, 1);
  if (prompts.length * n > MAX_CHOICES) throw badField('n', `${prompts.length} prompts times n=${n} asks for ${prompts.length * n} choices; one request may ask for at most ${MAX_CHOICES}.`);
  const longest = Math.max(...prompts.map((p) => p.length));
  const maxTokensGiven = get('max_tokens');
  const maxTokens = maxTokensGiven === undefined && b.max_tokens === null
    ? ctx.nPositions - longest // null: up to the end of the context
    : int('max_tokens', 0, ctx.nPositions, 16, `a whole number from 0 to ${ctx.nPositions}`);
  if (longest + maxTokens > ctx.nPositions) {
    throw badField(
      'max_tokens',
      `This model's context is ${ctx.nPositions} tokens; the prompt has ${longest} and max_tokens asks for ${maxTokens} more: shorten the prompt or lower max_tokens to at most ${Math.max(0, ctx.nPositions - longest)}.`,
      'context_length_exceeded',
    );
  }
  const temperature = num('temperature', 0, 2, 1);
  const topP = num('top_p', 0, 1, 1, 'a number above 0 and at most 1');
  if (topP === 0) throw badField('top_p', 'top_p must be a number above 0 and at most 1 (got 0).');
  const stop = parseStop(get('stop'));
  const seedGiven = get('seed');
  const seed = seedGiven === undefined ? Math.floor(Math.random() * 2 ** 31) : int('seed', 0, Number.MAX_SAFE_INTEGER, 0, 'a whole number >= 0');
  const logprobsGiven = get('logprobs');
  const logprobs = logprobsGiven === undefined ? undefined : int('logprobs', 0, 5, 0);
  const stream = bool('stream');
  const so = get('stream_options');
  let includeUsage = false;
  if (so !== undefined) {
    if (!stream) throw badField('stream_options', 'stream_options is only allowed with stream: true.');
    if (typeof so !== 'object' || Array.isArray(so)) throw badField('stream_options', 'stream_options must be an object such as {"include_usage": true}.');
    for (const k of Object.keys(so)) if (k !== 'include_usage') throw badField(`stream_options.${k}`, `Unknown field 'stream_options.${k}'; only include_usage is accepted.`, 'unknown_parameter');
    const iu = (so as Record<string, unknown>).include_usage;
    if (iu !== undefined && iu !== null && typeof iu !== 'boolean') throw badField('stream_options.include_usage', 'stream_options.include_usage must be true or false.');
    includeUsage = iu === true;
  }
  const user = get('user');
  if (user !== undefined && typeof user !== 'string') throw badField('user', 'user must be a string.');
  const sampling: GenerateOptions = {
    maxNewTokens: maxTokens, temperature, topP, stop, seed,
    presencePenalty: num('presence_penalty', -2, 2, 0),
    frequencyPenalty: num('frequency_penalty', -2, 2, 0),
    topK: int('top_k', 0, ctx.vocabSize, 0, `a whole number from 0 (off) to ${ctx.vocabSize}`),
    minP: num('min_p', 0, 0.999, 0, 'a number from 0 (off) to 0.999'),
    repetitionPenalty: num('repetition_penalty', Number.MIN_VALUE, 100, 1, 'a number above 0 (1 is off)'),
    noRepeatNgramSize: int('no_repeat_ngram_size', 0, ctx.nPositions, 0),
    stopAtEos: !bool('ignore_eos'), // vLLM's extra field: fixed output lengths for benchmarks
  };
  return { prompts, promptTexts, n, maxTokens, seed, echo: bool('echo'), logprobs, stream, includeUsage, sampling };
}

function parsePrompts(p: unknown, ctx: { vocabSize: number; tok: Tokenizer }): { prompts: Int32Array[]; promptTexts: string[] } {
  const ids = (a: unknown[], where: string): Int32Array => {
    for (const t of a) {
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= ctx.vocabSize) {
        throw badField('prompt', `${where} holds ${JSON.stringify(t)}, not a token id of this model (whole numbers from 0 to ${ctx.vocabSize - 1}).`);
      }
    }
    return Int32Array.from(a as number[]);
  };
  const withStart = (x: Int32Array): Int32Array => {
    if (x.length > 0) return x;
    if (ctx.tok.eosId === undefined) throw badField('prompt', 'An empty prompt needs an <|endoftext|> token to start from, and this tokenizer has none; give a prompt.');
    return Int32Array.of(ctx.tok.eosId);
  };
  const text = (s: string) => ({ ids: withStart(ctx.tok.encode(s, { specials: true })), text: s });
  const tokens = (a: unknown[], where: string) => {
    const x = ids(a, where);
    return { ids: withStart(x), text: ctx.tok.decode(x) };
  };
  let list: { ids: Int32Array; text: string }[];
  if (p === undefined || p === null) throw badField('prompt', 'prompt is required: a string, an array of strings, an array of token ids, or an array of such arrays.', 'missing_required_parameter');
  if (typeof p === 'string') list = [text(p)];
  else if (Array.isArray(p) && p.length === 0) throw badField('prompt', 'prompt must not be an empty array.');
  else if (Array.isArray(p) && p.every((x) => typeof x === 'string')) list = (p as string[]).map(text);
  else if (Array.isArray(p) && p.every((x) => typeof x === 'number')) list = [tokens(p, 'prompt')];
  else if (Array.isArray(p) && p.every((x) => Array.isArray(x))) list = (p as unknown[][]).map((a, i) => tokens(a, `prompt[${i}]`));
  else throw badField('prompt', 'prompt must be a string, an array of strings, an array of token ids, or an array of such arrays.');
  return { prompts: list.map((x) => x.ids), promptTexts: list.map((x) => x.text) };
}

function parseStop(v: unknown): string[] {
  if (v === undefined) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== 'string')) throw badField('stop', 'stop must be a string or an array of up to 4 strings.');
  if (list.length > 4) throw badField('stop', `stop may hold at most 4 strings (got ${list.length}).`);
  if (list.some((s) => s === '')) throw badField('stop', 'A stop string must not be empty.');
  return list as string[];
}
