import { GPT2Error } from '../errors.js';
import { paramLayout } from './params.js';

/** The shape of a GPT-2 model (our names; HF's config.json keys in comments). */
export interface GPT2Config {
  vocabSize: number; // vocab_size (V)
  nPositions: number; // n_positions (maxT)
  nEmbd: number; // n_embd (C)
  nLayer: number; // n_layer (L)
  nHead: number; // n_head (NH)
  nInner: number; // n_inner, null in HF means 4 * n_embd
  bosTokenId: number;
  eosTokenId: number;
}

/** GPT-2 sizes by hub id, for --init and random-weight benchmarks. */
export const PRESETS: Record<string, Omit<GPT2Config, 'nInner' | 'bosTokenId' | 'eosTokenId'>> = {
  gpt2: { vocabSize: 50257, nPositions: 1024, nEmbd: 768, nLayer: 12, nHead: 12 },
  'gpt2-medium': { vocabSize: 50257, nPositions: 1024, nEmbd: 1024, nLayer: 24, nHead: 16 },
  'gpt2-large': { vocabSize: 50257, nPositions: 1024, nEmbd: 1280, nLayer: 36, nHead: 20 },
  'gpt2-xl': { vocabSize: 50257, nPositions: 1024, nEmbd: 1600, nLayer: 48, nHead: 25 },
};

export function presetConfig(name: string): GPT2Config {
  const p = PRESETS[name];
  if (!p) throw new GPT2Error(`Unknown model size '${name}'; choose one of ${Object.keys(PRESETS).join(', ')} or give a config.json.`);
  return { ...p, nInner: 4 * p.nEmbd, bosTokenId: 50256, eosTokenId: 50256 };
}

type Json = Record<string, unknown>;

// sane upper bounds, far past any GPT-2 (XL: 50257, 1024, 1600, 48, 25, 6400), so that a corrupt
// or hostile config.json is refused before anything is sized by it
const MAX: Record<string, number> = { vocab_size: 1 << 20, n_positions: 1 << 20, n_ctx: 1 << 20, n_embd: 1 << 16, n_layer: 1 << 12, n_head: 1 << 12, n_inner: 1 << 18 };

/** Parses an HF GPT-2 config.json, rejecting variants whose math we do not implement. */
export function parseConfig(json: string | Json, source = 'config.json'): GPT2Config {
  let c: Json;
  try {
    c = typeof json === 'string' ? (JSON.parse(json) as Json) : json;
  } catch {
    throw new GPT2Error(`${source} is not valid JSON; restore it from the original checkpoint.`);
  }
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new GPT2Error(`${source} must hold a JSON object.`);
  const bad = (what: string): never => {
    throw new GPT2Error(`${source}: ${what}; gpt2.ts runs GPT-2-shaped models only.`);
  };
  if (c.model_type !== undefined && c.model_type !== 'gpt2') bad(`model_type is '${String(c.model_type)}', not 'gpt2'`);
  const int = (key: string, fallback?: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) bad(`'${key}' must be a positive integer (found ${JSON.stringify(c[key])})`);
    if ((v as number) > MAX[key]) bad(`'${key}' is ${v}, past the largest gpt2.ts accepts (${MAX[key]})`);
    return v as number;
  };
  const nEmbd = int('n_embd');
  const nHead = int('n_head');
  const cfg: GPT2Config = {
    vocabSize: int('vocab_size'),
    nPositions: int('n_positions', c.n_ctx as number | undefined),
    nEmbd,
    nLayer: int('n_layer'),
    nHead,
    nInner: c.n_inner === null || c.n_inner === undefined ? 4 * nEmbd : int('n_inner'),
    bosTokenId: typeof c.bos_token_id === 'number' ? c.bos_token_id : 50256,
    eosTokenId: typeof c.eos_token_id === 'number' ? c.eos_token_id : 50256,
  };
  if (nEmbd % nHead !== 0) bad(`n_embd (${nEmbd}) is not divisible by n_head (${nHead})`);
  const { total } = paramLayout(cfg);
  if (total > 2 ** 32 - 1) bad(`these sizes make ${total.toExponential(2)} parameters, more than one buffer can hold (4.3e9)`);
  const act = c.activation_function ?? 'gelu_new';
  if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') bad(`activation_function '${String(act)}' is not supported (only gelu_new)`);
  const eps = c.layer_norm_epsilon ?? 1e-5;
  if (eps !== 1e-5) bad(`layer_norm_epsilon ${String(eps)} is not supported (only 1e-5)`);
  if (c.tie_word_embeddings === false) bad('an untied lm_head (tie_word_embeddings: false) is not supported');
  if (c.scale_attn_by_inverse_layer_idx === true) bad('scale_attn_by_inverse_layer_idx is not supported');
  if (c.scale_attn_weights === false) bad('scale_attn_weights: false is not supported');
  if (c.add_cross_attention === true) bad('cross-attention layers are not supported');
  return cfg;
}

/** The config.json that GPT2LMHeadModel.save_pretrained writes for this shape. */
export function configToJson(cfg: GPT2Config): Json {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: cfg.vocabSize,
    n_positions: cfg.nPositions,
    n_ctx: cfg.nPositions,
    n_embd: cfg.nEmbd,
    n_layer: cfg.nLayer,
    n_head: cfg.nHead,
    n_inner: cfg.nInner === 4 * cfg.nEmbd ? null : cfg.nInner,
    activation_function: 'gelu_new',
    layer_norm_epsilon: 1e-5,
    resid_pdrop: 0.1,
    embd_pdrop: 0.1,
    attn_pdrop: 0.1,
    initializer_range: 0.02,
    scale_attn_weights: true,
    use_cache: true,
    bos_token_id: cfg.bosTokenId,
    eos_token_id: cfg.eosTokenId,
    tie_word_embeddings: true,
    torch_dtype: 'float32',
  };
}
