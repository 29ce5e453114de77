// What data-parallel training asks of a collective library (MPI, @gpt2/mpi), on host memory.
// Operations are queued and run in order on every rank (each rank must queue the same ones, in
// the same order); each returns a promise of its completion, so the caller can go on computing
// (the next layer's backward) while earlier ones run. A single process gets `singleProcess`.

export type ReduceOp = 'sum' | 'max' | 'min';

export interface Collective {
  readonly rank: number;
  readonly size: number;
  /** This rank's machine, for messages. */
  readonly host: string;
  /** Every rank's machine, by rank. */
  readonly hosts: readonly string[];
  /** x = op over every rank's x, in place. */
  allReduce(x: Float32Array | Float64Array, op?: ReduceOp): Promise<void>;
  /** mine = rank r's part ([S*r/N, S*(r+1)/N), shardRange) of the sum of every rank's whole (S elements). */
  reduceScatter(whole: Float32Array, mine: Float32Array): Promise<void>;
  /** Every rank's part of whole, already in place on its owner, copied to every rank. */
  allGather(whole: Float32Array): Promise<void>;
  /** Every rank's part (mine) into whole (S elements) on root; whole is null on the others. */
  gather(mine: Float32Array, whole: Float32Array | null, S: number, root: number): Promise<void>;
  /** x from root to every rank. */
  broadcast(x: Float32Array | Uint8Array, root: number): Promise<void>;
  /** Every rank's bytes (the same length on each), in rank order. */
  allGatherBytes(mine: Uint8Array): Promise<Uint8Array[]>;
  barrier(): Promise<void>;
  /** A point every rank must reach ("step 12's gradient exchange"): a rank that does not is named when the collective timeout passes. */
  arrive(what: string): void;
}

/** Rank r's part of S elements split across N ranks: [start, start + count). */
export function shardRange(S: number, r: number, N: number): { start: number; count: number } {
  const start = Math.floor((S * r) / N);
  return { start, count: Math.floor((S * (r + 1)) / N) - start };
}

/** One process: every operation is already done. */
export const singleProcess: Collective = {
  rank: 0,
  size: 1,
  host: 'localhost',
  hosts: ['localhost'],
  allReduce: async () => {},
  reduceScatter: async (whole, mine) => mine.set(whole.subarray(0, mine.length)),
  allGather: async () => {},
  gather: async (mine, whole) => whole?.set(mine),
  broadcast: async () => {},
  allGatherBytes: async (mine) => [mine],
  barrier: async () => {},
  arrive: () => {},
};
