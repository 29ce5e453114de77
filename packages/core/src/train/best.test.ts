import { describe, expect, it } from 'vitest';
import { BestTracker, type BestState } from './best.js';

// a scripted run: validation loss every 100 steps, improving, then over-fitting
const LOSSES = [5.0, 4.2, 3.9, 3.95, 3.8, 3.8, 3.85, 3.9, 4.1, 4.3];
const at = (i: number) => ({ step: (i + 1) * 100, valLoss: LOSSES[i], valAccuracy: 0.1 + i / 100 });

function replay(patience: number, from = 0, state?: BestState) {
  const t = new BestTracker(patience, state);
  const improved: number[] = [];
  for (let i = from; i < LOSSES.length; i++) {
    const r = t.observe(at(i));
    if (r.improved) improved.push(at(i).step);
    if (r.stop) return { t, improved, stoppedAt: at(i).step };
  }
  return { t, improved, stoppedAt: undefined };
}

describe('best checkpoint and early stopping', () => {
  it('keeps the lowest validation loss (a tie is not an improvement) and counts evaluations since it', () => {
    const { t, improved, stoppedAt } = replay(0);
    expect(improved).toEqual([100, 200, 300, 500]);
    expect(t.state).toEqual({ best: { step: 500, valLoss: 3.8, valAccuracy: 0.14 }, sinceBest: 5 });
    expect(stoppedAt).toBeUndefined(); // patience 0: never stops
  });

  it('stops after `patience` evaluations without improvement', () => {
    expect(replay(1).stoppedAt).toBe(400);
    expect(replay(3).stoppedAt).toBe(800);
    expect(replay(3).t.state.best?.step).toBe(500);
    expect(replay(6).stoppedAt).toBeUndefined();
  });

  it('resumes exactly from its saved state (through JSON, as trainer_state.json holds it)', () => {
    for (const cut of [1, 3, 4, 6]) {
      const first = new BestTracker(3);
      for (let i = 0; i < cut; i++) first.observe(at(i));
      const saved = JSON.parse(JSON.stringify(first.state)) as BestState;
      const resumed = replay(3, cut, saved);
      expect(resumed.stoppedAt).toBe(800);
      expect(resumed.t.state).toEqual(replay(3).t.state);
    }
  });
});
