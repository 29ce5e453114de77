// The folder transformers.js (@huggingface/transformers) loads as a gpt2 causal LM with
// from_pretrained(DIR) / pipeline('text-generation', DIR): the HF JSON files, an HF fast-tokenizer
// tokenizer.json, and the ONNX model under onnx/ (model.onnx, and model_quantized.onnx for
// dtype 'q8'). Runs in Node and in browsers; writing the files is the caller's.
import { paramsToTensors } from '../io/checkpoint.js';
import { configToJson, type GPT2Config } from '../model/config.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { gpt2OnnxModel } from './onnx-graph.js';

export interface OnnxExportOptions {
  /** also write onnx/model_quantized.onnx with int8 matmul weights ('q8' in transformers.js) */
  quantize?: 'q8';
  /** initializer bytes past which the weights go to an external .onnx_data file (protobuf's 2 GB limit) */
  externalDataAbove?: number;
}

/** path inside the folder -> contents (an array is one file written piece by piece) */
export type ExportFiles = Record<string, string | Uint8Array | Uint8Array[]>;

const json = (o: unknown) => JSON.stringify(o, null, 2) + '\n';
const EXTERNAL_ABOVE = 1.9e9;

/** tokenizer.json as HF's `tokenizers` writes it for GPT-2: byte-level BPE, specials as added tokens. */
export function tokenizerJson(tok: Tokenizer): string {
  const vocab = Object.fromEntries(tok.vocab);
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return JSON.stringify({
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...tok.specials].map(([content, id]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: tok.merges,
    },
  });
}

/** tokenizer_config.json: GPT2TokenizerFast, no prefix space, decoding without space clean-up (so text round-trips). */
export function tokenizerConfigJson(tok: Tokenizer, cfg: GPT2Config): string {
  const eos = tok.eosId !== undefined ? '<|endoftext|>' : null;
  return json({
    tokenizer_class: 'GPT2Tokenizer',
    add_bos_token: false,
    add_prefix_space: false,
    clean_up_tokenization_spaces: false,
    model_max_length: cfg.nPositions,
    bos_token: eos,
    eos_token: eos,
    unk_token: eos,
    added_tokens_decoder: Object.fromEntries([...tok.specials].map(([content, id]) => [String(id), { content, lstrip: false, normalized: true, rstrip: false, single_word: false, special: true }])),
  });
}

/** Every file of the export, in memory. The fp32 weights are shared with `params`'s transposed copies, not duplicated per file. */
export function transformersJsFiles(cfg: GPT2Config, params: Float32Array, tok: Tokenizer, opts: OnnxExportOptions = {}): ExportFiles {
  const tensors = paramsToTensors(cfg, params);
  const files: ExportFiles = {};
  const external: Record<string, number> = {}; // transformers.js's use_external_data_format: file -> chunks
  for (const [file, quantize] of [['model.onnx', false], ...(opts.quantize === 'q8' ? [['model_quantized.onnx', true] as const] : [])] as const) {
    const { model, data } = gpt2OnnxModel(cfg, tensors, { quantize, externalData: { name: `${file}_data`, above: opts.externalDataAbove ?? EXTERNAL_ABOVE } });
    files[`onnx/${file}`] = model;
    if (data) {
      files[`onnx/${file}_data`] = data;
      external[file] = 1;
    }
  }
  const config: Record<string, unknown> = configToJson(cfg);
  if (Object.keys(external).length) config['transformers.js_config'] = { use_external_data_format: external };
  files['config.json'] = json(config);
  files['generation_config.json'] = json({ bos_token_id: cfg.bosTokenId, eos_token_id: cfg.eosTokenId });
  files['tokenizer.json'] = tokenizerJson(tok);
  files['tokenizer_config.json'] = tokenizerConfigJson(tok, cfg);
  return files;
}
