// @gpt2/core: runs unchanged in Node and browsers (Node-only helpers live in '@gpt2/core/node').
export * from './backend.js';
export * from './errors.js';
export * from './model/config.js';
export * from './model/params.js';
export * from './model/gpt2.js';
export * from './io/safetensors.js';
export * from './io/checkpoint.js';
export * from './sample/rng.js';
export * from './sample/processors.js';
export * from './sample/generate.js';
export * from './tokenizer/tokenizer.js';
export * from './tokenizer/train.js';
export * from './tokenizer/chunks.js';
export { createCpuBackend } from './backends/cpu/index.js';
export * from './train/schedule.js';
export * from './train/data.js';
export * from './train/trainer.js';
export * from './train/perplexity.js';
