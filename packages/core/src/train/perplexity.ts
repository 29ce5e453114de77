// Mean loss and perplexity of a token sequence, as Hugging Face's perplexity guide computes it:
// windows of the context length advancing by `stride`; each window scores only the tokens the
// previous one did not, so every token after the first is scored exactly once.
import { GPT2Error } from '../errors.js';
import type { GPT2 } from '../model/gpt2.js';

export interface PerplexityResult {
  loss: number;
  perplexity: number;
  /** next-token accuracy: the fraction of scored tokens that were the argmax of their logits */
  accuracy: number;
  /** tokens scored (all but the first) */
  tokens: number;
}

export async function perplexity(model: GPT2, ids: ArrayLike<number>, stride = Math.floor(model.config.nPositions / 2)): Promise<PerplexityResult> {
  const maxLen = model.config.nPositions;
  if (ids.length < 2) throw new GPT2Error(`Evaluation needs at least 2 tokens of text (got ${ids.length}).`);
  if (!(Number.isInteger(stride) && stride >= 1 && stride <= maxLen)) throw new GPT2Error(`stride must be a whole number from 1 to ${maxLen} (got ${stride}).`);
  let sum = 0, count = 0, correct = 0, prevEnd = 0;
  for (let begin = 0; begin < ids.length; begin += stride) {
    const end = Math.min(begin + maxLen, ids.length);
    const T = end - begin - 1; // predictions in this window
    if (T < 1) break;
    const inputs = new Int32Array(T), targets = new Int32Array(T);
    let scored = 0;
    for (let i = 0; i < T; i++) {
      inputs[i] = ids[begin + i];
      const target = begin + i + 1;
      targets[i] = target >= Math.max(prevEnd, 1) ? ids[target] : -100; // already scored by an earlier window
      if (targets[i] >= 0) scored++;
    }
    if (scored > 0) {
      const mean = (await model.forward(inputs, 1, T, targets))!;
      sum += mean * scored;
      count += scored;
      correct += (await model.accuracy()).correct;
    }
    prevEnd = end;
    if (end === ids.length) break;
  }
  const loss = sum / count;
  return { loss, perplexity: Math.exp(loss), accuracy: correct / count, tokens: count };
}
