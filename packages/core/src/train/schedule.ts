import { GPT2Error } from '../errors.js';

export type ScheduleKind = 'constant' | 'linear' | 'cosine';

/**
 * Learning rate at optimizer step `step` (0-based) of `total`: linear warmup over `warmup`
 * steps (reaching the full rate on the last warmup step, so no step is wasted at lr 0), then
 * constant, or linear / cosine decay to 0 at `total` (HF's get_*_schedule_with_warmup shapes).
 */
export function learningRate(kind: ScheduleKind, lr: number, step: number, total: number, warmup: number): number {
  if (step < warmup) return (lr * (step + 1)) / warmup;
  if (kind === 'constant') return lr;
  const progress = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  if (kind === 'linear') return lr * (1 - progress);
  if (kind === 'cosine') return lr * 0.5 * (1 + Math.cos(Math.PI * progress));
  throw new GPT2Error(`Unknown learning-rate schedule '${String(kind)}'; choose constant, linear or cosine.`);
}
