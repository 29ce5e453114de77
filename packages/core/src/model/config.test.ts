import { describe, expect, it } from 'vitest';
import { GPT2Error } from '../errors.js';
import { configToJson, parseConfig, presetConfig } from './config.js';

const base = { model_type: 'gpt2', vocab_size: 50257, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12, n_inner: null };

describe('config.json', () => {
  it('reads HF keys, n_inner null meaning 4 * n_embd, n_ctx as a fallback', () => {
    expect(parseConfig(base)).toMatchObject({ nEmbd: 768, nInner: 3072, nPositions: 1024, eosTokenId: 50256 });
    const { n_positions: _, ...noPositions } = base;
    expect(parseConfig({ ...noPositions, n_ctx: 512 }).nPositions).toBe(512);
    expect(parseConfig({ ...base, n_inner: 1000 }).nInner).toBe(1000);
  });

  it('round-trips through configToJson', () => {
    expect(parseConfig(configToJson(presetConfig('gpt2-medium')))).toEqual(presetConfig('gpt2-medium'));
  });

  it.each([
    [{ ...base, model_type: 'llama' }, /model_type is 'llama'/],
    [{ ...base, n_head: 7 }, /not divisible by n_head/],
    [{ ...base, activation_function: 'relu' }, /activation_function 'relu'/],
    [{ ...base, layer_norm_epsilon: 1e-6 }, /layer_norm_epsilon/],
    [{ ...base, tie_word_embeddings: false }, /untied lm_head/],
    [{ ...base, n_layer: 0 }, /'n_layer' must be a positive integer/],
    [{ ...base, scale_attn_by_inverse_layer_idx: true }, /scale_attn_by_inverse_layer_idx/],
    ['{not json', /not valid JSON/],
    [{ ...base, n_embd: 112064004837248, n_head: 1 }, /'n_embd' is 112064004837248, past the largest gpt2\.ts accepts \(65536\)/],
    [{ ...base, vocab_size: '50257' }, /'vocab_size' must be a positive integer \(found "50257"\)/],
    [{ ...base, n_embd: 65536, n_head: 1, n_layer: 4096 }, /these sizes make 2\.\d+e\+14 parameters, more than one buffer can hold/],
  ])('rejects %j with a clear message', (cfg, pattern) => {
    expect(() => parseConfig(cfg as never)).toThrowError(GPT2Error);
    expect(() => parseConfig(cfg as never)).toThrowError(pattern);
  });
});
