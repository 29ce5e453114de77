// The best evaluation of a run and the patience count of early stopping, as HF's Trainer keeps
// them (load_best_model_at_end with metric_for_best_model="eval_loss", EarlyStoppingCallback):
// an evaluation improves when its validation loss is strictly below the best so far; after
// `patience` evaluations in a row without improvement, training stops.

export interface Evaluation {
  step: number;
  valLoss: number;
  valAccuracy: number;
}

/** What a resumed run needs (trainer_state.json): the best so far, and evaluations since it. */
export interface BestState {
  best?: Evaluation;
  sinceBest: number;
}

export class BestTracker {
  state: BestState;

  /** patience 0: never stop early */
  constructor(readonly patience = 0, state: BestState = { sinceBest: 0 }) {
    this.state = { ...state };
  }

  /** Records one evaluation: whether it is the new best, and whether training should stop now. */
  observe(e: Evaluation): { improved: boolean; stop: boolean } {
    const improved = !this.state.best || e.valLoss < this.state.best.valLoss;
    this.state = improved ? { best: { ...e }, sinceBest: 0 } : { ...this.state, sinceBest: this.state.sinceBest + 1 };
    return { improved, stop: this.patience > 0 && this.state.sinceBest >= this.patience };
  }
}
