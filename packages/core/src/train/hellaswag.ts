// HellaSwag-style multiple choice, scored as llm.c's hellaswag.py scores it (completion style):
// for each ending, the context's tokens followed by those of " " + ending (encoded apart), and the
// cross-entropy of the ending's tokens given everything before them. acc: the ending with the
// lowest summed loss is the label; acc_norm: the lowest mean loss per token. The items' format is
// the HellaSwag release files': one JSON object a line with `ctx`, `endings` (4) and `label`.
import { GPT2Error } from '../errors.js';
import type { GPT2 } from '../model/gpt2.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

export interface ChoiceItem {
  ctx: string;
  endings: string[];
  label: number;
}

export interface ChoiceScore {
  /** summed and mean cross-entropy of each ending's tokens */
  sumLoss: number[];
  meanLoss: number[];
  /** argmin of sumLoss, of meanLoss */
  pred: number;
  predNorm: number;
}

export interface ChoiceResult {
  n: number;
  acc: number;
  accNorm: number;
  scores: ChoiceScore[];
}

/** The items of a HellaSwag .jsonl text; a bad line ends in one sentence naming it. */
export function parseChoiceItems(text: string, file: string): ChoiceItem[] {
  const items: ChoiceItem[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    const where = `${file} line ${i + 1}`;
    let o: { ctx?: unknown; endings?: unknown; label?: unknown };
    try {
      o = JSON.parse(line);
    } catch {
      throw new GPT2Error(`${where} is not JSON; each line holds one item: {"ctx": ..., "endings": [...], "label": ...}.`);
    }
    const endings = o.endings, label = Number(o.label);
    if (typeof o.ctx !== 'string' || !o.ctx || !Array.isArray(endings) || endings.length < 2 || !endings.every((e) => typeof e === 'string' && e.length > 0))
      throw new GPT2Error(`${where} needs "ctx" (a non-empty string) and "endings" (2 or more non-empty strings), as the HellaSwag files hold.`);
    if (!(Number.isInteger(label) && label >= 0 && label < endings.length)) throw new GPT2Error(`${where}: "label" must be the index of the right ending, 0 to ${endings.length - 1}.`);
    items.push({ ctx: o.ctx, endings: endings as string[], label });
  });
  if (items.length === 0) throw new GPT2Error(`${file} holds no items.`);
  return items;
}

const argmin = (xs: number[]) => xs.reduce((best, x, i) => (x < xs[best] ? i : best), 0);

/**
 * Scores the items, `itemsPerBatch` items (their endings as rows) a forward pass. A context too
 * long for the model's window loses tokens from its start (what GPT-2 124M's 1024 never needs on
 * HellaSwag); an ending that does not fit with one token of context ends in one sentence.
 */
export async function scoreChoices(
  model: GPT2,
  tok: Tokenizer,
  items: ChoiceItem[],
  opts: { itemsPerBatch?: number; onProgress?: (done: number, total: number, scores: ChoiceScore[]) => void } = {},
): Promise<ChoiceResult> {
  const maxT = model.config.nPositions, per = Math.max(1, opts.itemsPerBatch ?? 4);
  const scores: ChoiceScore[] = [];
  for (let start = 0; start < items.length; start += per) {
    // rows: (tokens, where the ending starts) for every ending of every item of this batch
    const rows: { ids: number[]; from: number }[] = [];
    for (const item of items.slice(start, start + per)) {
      const ctx = [...tok.encode(item.ctx)];
      for (const ending of item.endings) {
        const end = [...tok.encode(' ' + ending)];
        if (end.length + 1 > maxT) throw new GPT2Error(`An ending of ${end.length} tokens does not fit the model's context of ${maxT} with its context; use a model with a longer context.`);
        const keep = Math.min(ctx.length, maxT - end.length);
        rows.push({ ids: [...ctx.slice(ctx.length - keep), ...end], from: keep });
      }
    }
    const B = rows.length, T = Math.max(...rows.map((r) => r.ids.length)) - 1;
    const inputs = new Int32Array(B * T), targets = new Int32Array(B * T).fill(-100);
    rows.forEach((r, b) => {
      for (let t = 0; t < r.ids.length - 1; t++) {
        inputs[b * T + t] = r.ids[t];
        if (t + 1 >= r.from) targets[b * T + t] = r.ids[t + 1]; // position t predicts token t+1, an ending's
      }
    });
    await model.forward(inputs, B, T, targets);
    const losses = await model.tokenLosses();
    let b = 0;
    for (const item of items.slice(start, start + per)) {
      const sumLoss: number[] = [], meanLoss: number[] = [];
      for (let e = 0; e < item.endings.length; e++, b++) {
        let sum = 0;
        for (let t = 0; t < T; t++) sum += losses[b * T + t];
        const count = rows[b].ids.length - Math.max(rows[b].from, 1); // the first token is never predicted
        sumLoss.push(sum);
        meanLoss.push(sum / count);
      }
      scores.push({ sumLoss, meanLoss, pred: argmin(sumLoss), predNorm: argmin(meanLoss) });
    }
    opts.onProgress?.(scores.length, items.length, scores);
  }
  const n = scores.length;
  return {
    n,
    acc: scores.filter((s, i) => s.pred === items[i].label).length / n,
    accNorm: scores.filter((s, i) => s.predNorm === items[i].label).length / n,
    scores,
  };
}
