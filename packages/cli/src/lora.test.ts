import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, ROOT, gpt2 } from './test/cli.js';

let dir: string, data: string;
const base = join(FIXTURES, 'gpt2-tiny');
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gpt2-lora-'));
  data = join(dir, 'shakespeare.txt');
  writeFileSync(data, readFileSync(join(ROOT, 'examples/shakespeare.txt'), 'utf8').slice(0, 12_000));
});
const finetune = (run: string, extra: string[]) => [
  'finetune', data, '--model', base, '--backend', 'cpu', '--lora-r', '4', '--lora-dropout', '0.1', '--batch-size', '2', '--block-size', '32',
  '--lr', '1e-2', '--sample-every', '0', '--eval-every', '0', '--log-every', '1', '--out', run, ...extra,
];
const losses = (run: string) => readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.loss !== undefined).map((m) => [m.step, m.loss]);

describe('LoRA fine-tuning from the command line', () => {
  it('saves peft adapters; --resume continues with exactly the uninterrupted losses and adapters', async () => {
    const full = join(dir, 'full'), split = join(dir, 'split');
    const r = await gpt2(finetune(full, ['--steps', '4', '--save-every', '0']));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/LoRA r=4, alpha 8 on c_attn, attn\.c_proj, c_fc, mlp\.c_proj: 8,192 trained, the rest frozen/);
    expect(r.stderr).toMatch(/done: LoRA adapter saved to .*model.*gpt2 generate --adapter/);
    const cfg = JSON.parse(readFileSync(join(full, 'model', 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, lora_dropout: 0.1, fan_in_fan_out: true, base_model_name_or_path: base });
    expect(existsSync(join(full, 'model', 'adapter_model.safetensors'))).toBe(true);
    expect(existsSync(join(full, 'model', 'model.safetensors'))).toBe(false); // the base is not copied
    expect((await gpt2(finetune(split, ['--steps', '2', '--save-every', '0']))).code).toBe(0);
    const resumed = await gpt2(['finetune', '--resume', split, '--steps', '4']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(losses(split)).toEqual(losses(full));
    expect(readFileSync(join(split, 'model', 'adapter_model.safetensors'))).toEqual(readFileSync(join(full, 'model', 'adapter_model.safetensors')));
  });

  it('generate and eval --adapter equal the merged model; gpt2 merge writes a plain HF folder', async () => {
    const adapter = join(dir, 'full', 'model'), merged = join(dir, 'merged');
    const m = await gpt2(['merge', '--adapter', adapter, '--out', merged]);
    expect(m.code, m.stderr).toBe(0);
    expect(existsSync(join(merged, 'model.safetensors')) && existsSync(join(merged, 'config.json'))).toBe(true);
    const gen = (model: string[]) => gpt2(['generate', ...model, '--backend', 'cpu', '--prompt', 'ROMEO:', '--max-new-tokens', '12', '--seed', '3', '--json']);
    const [a, b, plain] = await Promise.all([gen(['--adapter', adapter]), gen(['--model', merged]), gen(['--model', base])]);
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout).samples).toEqual(JSON.parse(b.stdout).samples);
    expect(JSON.parse(a.stdout).samples).not.toEqual(JSON.parse(plain.stdout).samples); // the adapter changes the model
    const ev = async (model: string[]) => JSON.parse((await gpt2(['eval', ...model, '--data', data, '--backend', 'cpu', '--json'])).stdout).loss;
    expect(await ev(['--adapter', adapter])).toBeCloseTo(await ev(['--model', merged]), 6);
  });

  it.each([
    ['a rank larger than a layer', () => finetune(join(dir, 'bad1'), ['--steps', '1', '--lora-r', '65']), /A LoRA rank of 65 is larger than c_attn's 64x192 weight allows \(at most 64\); lower --lora-r\./],
    ['a target GPT-2 does not have', () => finetune(join(dir, 'bad2'), ['--steps', '1', '--lora-targets', 'c_attn,q_proj']), /'q_proj' is not a GPT-2 module LoRA can adapt; choose --lora-targets from c_attn, attn\.c_proj, c_fc, mlp\.c_proj\./],
    ['LoRA options without a rank', () => ['finetune', data, '--model', base, '--lora-alpha', '16'], /--lora-alpha shape LoRA adapters; add --lora-r R to train them\./],
    ['an adapter for another model', () => ['generate', '--model', join(dir, 'c48', 'model'), '--adapter', join(dir, 'full', 'model')], /has shape \[4,64\] but this model with r=4 needs \[4,48\]; the adapter belongs to another base model/],
    ['an adapter folder without adapter files', () => ['eval', '--adapter', base, '--data', data], /holds no adapter_config\.json; pass the folder a LoRA fine-tune saved/],
  ])('%s ends in one sentence, exit 1', async (_, args, pattern) => {
    if (!existsSync(join(dir, 'c48', 'model'))) {
      // another base: C=48 (the adapter above is for gpt2-tiny's C=64)
      writeFileSync(join(dir, 'c48.json'), JSON.stringify({ model_type: 'gpt2', vocab_size: 50257, n_positions: 64, n_embd: 48, n_layer: 2, n_head: 2 }));
      const t = await gpt2(['train', data, '--init', join(dir, 'c48.json'), '--train-tokenizer', '300', '--steps', '1', '--eval-every', '0', '--sample-every', '0', '--backend', 'cpu', '--out', join(dir, 'c48')]);
      expect(t.code, t.stderr).toBe(0);
    }
    const r = await gpt2(args());
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(pattern);
  });

  it('--lora-r on train is a usage error that points to finetune (exit 2)', async () => {
    const r = await gpt2(['train', data, '--init', 'gpt2', '--lora-r', '4']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/LoRA adapts a pretrained model; use gpt2 finetune --model MODEL --lora-r R\./);
  });
});
