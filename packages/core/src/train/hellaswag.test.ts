import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createReferenceBackend } from '../backends/reference/index.js';
import { fixturesDir, loadFixture } from '../conformance/fixtures.js';
import { GPT2 } from '../model/gpt2.js';
import { loadTokenizerDir } from '../node.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { parseChoiceItems, scoreChoices } from './hellaswag.js';

// fixtures/hellaswag/reference.json: scripts/hellaswag_reference.py, float64 PyTorch and OpenAI's BPE
interface Ref { n: number; acc: number; acc_norm: number; items: { tokens: number[][]; sum_loss: number[]; mean_loss: number[]; pred: number; pred_norm: number }[] }
const dir = join(fixturesDir(), 'hellaswag');
const ref: Ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8'));
const items = parseChoiceItems(readFileSync(join(dir, 'items.jsonl'), 'utf8'), 'items.jsonl');
let tok: Tokenizer;
let model: GPT2;

beforeAll(async () => {
  const f = loadFixture('gpt2-tiny');
  tok = await loadTokenizerDir(f.dir);
  model = new GPT2(createReferenceBackend(), f.config, f.params);
});

describe('HellaSwag scoring (llm.c hellaswag.py)', () => {
  it('each ending summed and averaged as float64 PyTorch does, the same choices, acc and acc_norm', async () => {
    // the rows as the reference built them: context and " " + ending encoded apart, the context cut from its start past 64
    for (let i = 0; i < items.length; i++) {
      const ctx = [...tok.encode(items[i].ctx)];
      items[i].endings.forEach((e, k) => {
        const row = [...ctx, ...tok.encode(' ' + e)];
        expect(row.slice(-64), `item ${i} ending ${k}`).toEqual(ref.items[i].tokens[k]);
      });
    }
    expect(ref.items[6].tokens[0].length).toBe(64); // the long item is cut
    for (const itemsPerBatch of [1, 3]) {
      let calls = 0;
      const r = await scoreChoices(model, tok, items, { itemsPerBatch, onProgress: () => calls++ });
      expect(calls).toBe(Math.ceil(items.length / itemsPerBatch));
      expect(r.n).toBe(ref.n);
      r.scores.forEach((s, i) => {
        s.sumLoss.forEach((x, k) => expect(Math.abs(x - ref.items[i].sum_loss[k]), `item ${i} ending ${k} (${itemsPerBatch} a batch)`).toBeLessThan(1e-4));
        s.meanLoss.forEach((x, k) => expect(Math.abs(x - ref.items[i].mean_loss[k])).toBeLessThan(1e-5));
        expect([s.pred, s.predNorm]).toEqual([ref.items[i].pred, ref.items[i].pred_norm]);
      });
      expect([r.acc, r.accNorm]).toEqual([ref.acc, ref.acc_norm]);
    }
  });

  it('a bad line ends in one sentence naming it', () => {
    expect(() => parseChoiceItems('{"ctx": "a", "endings": ["b", "c"], "label": 0}\n{"ctx": "a"', 'x.jsonl')).toThrow(/x\.jsonl line 2 is not JSON/);
    expect(() => parseChoiceItems('{"ctx": "a", "endings": ["b"], "label": 0}', 'x.jsonl')).toThrow(/line 1 needs "ctx".*"endings"/);
    expect(() => parseChoiceItems('{"ctx": "a", "endings": ["b", "c"], "label": 2}', 'x.jsonl')).toThrow(/"label" must be the index of the right ending, 0 to 1/);
    expect(() => parseChoiceItems('\n\n', 'x.jsonl')).toThrow(/x\.jsonl holds no items/);
    expect(parseChoiceItems('{"ctx": "a", "endings": ["b", "c"], "label": "1"}\n', 'x.jsonl')[0].label).toBe(1); // the release files' labels are ints; the test set's strings
  });
});
