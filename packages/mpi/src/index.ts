// MPI for data-parallel training: core's Collective over Open MPI, through a Node-API addon
// (native/) that loads libmpi at run time and runs every MPI call on a communication thread of its
// own, so reductions proceed while JavaScript computes. Only processes started by mpirun load it.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { GPT2Error, type Collective, type ReduceOp } from '@gpt2/core';

interface Addon {
  start(onDone: (error?: string) => void): [rank: number, size: number, threadLevel: number, path: string, version: string];
  submit(kind: number, a: ArrayBufferView | null, b: ArrayBufferView | null, count: number, dtype: number, op: number, root: number): void;
  arrivedAt(): number[];
  finalize(): void;
  exitNow(code: number): never;
}

const enum Kind { AllReduce, ReduceScatter, AllGather, Gather, Broadcast, AllGatherBytes, Barrier, Arrive }
const enum DType { F32, F64, Bytes }
const OPS: Record<ReduceOp, number> = { sum: 0, max: 1, min: 2 };

const ADDON = fileURLToPath(new URL('../build/gpt2_mpi.node', import.meta.url));
const NOT_BUILT = fileURLToPath(new URL('../build/mpi-not-built.txt', import.meta.url));

/** The rank and size mpirun (Open MPI, or a PMI launcher) gave this process, or undefined outside mpirun. */
export function launchedBy(env: NodeJS.ProcessEnv = process.env): { rank: number; size: number } | undefined {
  const size = env.OMPI_COMM_WORLD_SIZE ?? env.PMI_SIZE ?? env.PMIX_SIZE;
  const rank = env.OMPI_COMM_WORLD_RANK ?? env.PMI_RANK ?? env.PMIX_RANK;
  return size !== undefined && rank !== undefined ? { rank: Number(rank), size: Number(size) } : undefined;
}

/** Why a rank stopped waiting: what it waited at, and on rank 0 the ranks that never got there. */
export interface Stall {
  what: string;
  waitedSeconds: number;
  /** rank 0 only: the ranks that did not reach `what`, and the last point each reached */
  missing?: { rank: number; host: string; lastReached: string }[];
}

export interface MpiOptions {
  /** A collective that waits longer than this ends the job (seconds; default 300). */
  timeoutSeconds?: number;
  /** Says why the job stops (a sentence to print) before this rank exits; default: print it. */
  onStall?: (s: Stall, c: MpiCollective) => void;
}

interface Pending {
  resolve: () => void;
  reject: (e: Error) => void;
  keep: unknown; // the buffers, alive until the operation is done
  at: number;
  what: string; // the last point arrive()d before it, and its id
  point: number;
}

export class MpiCollective implements Collective {
  readonly rank: number;
  readonly size: number;
  readonly host = hostname();
  /** The library and thread level, for `gpt2 info`-style lines. */
  readonly library: string;
  /** Every rank's host name (after start). */
  hosts: string[] = [];
  private readonly addon: Addon;
  private readonly pending: Pending[] = [];
  private readonly labels = new Map<number, string>(); // the recent arrive() points by id
  private arrivals = 0;
  private current = 'the start';
  private watch?: NodeJS.Timeout;
  private failed?: Error;
  timeoutSeconds: number;
  onStall?: MpiOptions['onStall'];

  private constructor(addon: Addon, opts: MpiOptions) {
    this.addon = addon;
    const [rank, size, level, path, version] = addon.start((err) => this.done(err));
    this.rank = rank;
    this.size = size;
    this.library = `${version || 'MPI'} (${path}), thread level ${level}`;
    this.timeoutSeconds = opts.timeoutSeconds ?? 300;
    this.onStall = opts.onStall;
  }

  /** Loads libmpi and joins the job mpirun started (MPI_Init_thread), then learns every rank's host. */
  static async start(opts: MpiOptions = {}): Promise<MpiCollective> {
    if (!existsSync(ADDON)) {
      const why = existsSync(NOT_BUILT) ? readFileSync(NOT_BUILT, 'utf8').trim().split('\n')[0] : 'it was not built';
      throw new GPT2Error(`This process was started by mpirun, but the MPI addon is not built (${why}); install g++ and run pnpm build.`);
    }
    let addon: Addon;
    try {
      addon = createRequire(import.meta.url)(ADDON) as Addon;
    } catch (err) {
      throw new GPT2Error(`The MPI addon could not load: ${(err as Error).message}; rebuild it with pnpm build.`);
    }
    // Open MPI's waits poll at full speed; the communication thread waiting for a slower rank would
    // take the core from this rank's own compute (measured: -13% tokens/s with 2 ranks on 2 cores)
    process.env.OMPI_MCA_mpi_yield_when_idle ??= '1';
    let c: MpiCollective;
    try {
      c = new MpiCollective(addon, opts);
    } catch (err) {
      throw new GPT2Error(`${(err as Error).message}.`);
    }
    const name = new Uint8Array(64);
    new TextEncoder().encodeInto(c.host.slice(0, 63), name);
    c.hosts = (await c.allGatherBytes(name)).map((b) => new TextDecoder().decode(b.subarray(0, b.indexOf(0) < 0 ? 64 : b.indexOf(0))));
    return c;
  }

  private done(err?: string): void {
    const p = this.pending.shift();
    if (!p) return;
    if (this.pending.length === 0 && this.watch) {
      clearInterval(this.watch);
      this.watch = undefined;
    }
    if (err) {
      this.failed ??= new GPT2Error(`An MPI operation failed on rank ${this.rank} (${this.host}) at ${p.what}: ${err}; another rank has probably stopped.`);
      p.reject(this.failed);
    } else p.resolve();
  }

  private submit(kind: Kind, a: ArrayBufferView | null, b: ArrayBufferView | null, count: number, dtype = DType.F32, op = 0, root = 0): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject, keep: [a, b], at: performance.now(), what: this.current, point: this.arrivals - 1 });
      this.addon.submit(kind, a, b, count, dtype, op, root);
      // a timer while anything is pending: it keeps the process alive and watches for a stall
      this.watch ??= setInterval(() => this.check(), 1000);
    });
  }

  /** A stall: the oldest pending operation has waited past the timeout (rank 0 first; the others a little later, so rank 0 can name the rank). */
  private check(): void {
    const p = this.pending[0];
    if (!p) return;
    const waited = (performance.now() - p.at) / 1000, limit = this.timeoutSeconds + (this.rank === 0 ? 0 : 30);
    if (waited < limit) return;
    const stall: Stall = { what: p.what, waitedSeconds: Math.round(waited) };
    if (this.rank === 0) {
      const at = this.addon.arrivedAt(), id = p.point;
      const name = (i: number) => (i < 0 ? 'nothing yet' : this.labels.get(i) ?? 'an earlier point');
      stall.missing = at.flatMap((reached, r) => (reached < id ? [{ rank: r, host: this.hosts[r] ?? '?', lastReached: name(reached) }] : []));
    }
    (this.onStall ?? ((s) => process.stderr.write(`error: ${describeStall(s, this)}\n`)))(stall, this);
    this.addon.exitNow(1);
  }

  allReduce(x: Float32Array | Float64Array, op: ReduceOp = 'sum'): Promise<void> {
    return this.submit(Kind.AllReduce, x, null, x.length, x instanceof Float64Array ? DType.F64 : DType.F32, OPS[op]);
  }

  reduceScatter(whole: Float32Array, mine: Float32Array): Promise<void> {
    return this.submit(Kind.ReduceScatter, whole, mine, whole.length);
  }

  allGather(whole: Float32Array): Promise<void> {
    return this.submit(Kind.AllGather, whole, null, whole.length);
  }

  gather(mine: Float32Array, whole: Float32Array | null, S: number, root: number): Promise<void> {
    return this.submit(Kind.Gather, mine, whole, S, DType.F32, 0, root);
  }

  broadcast(x: Float32Array | Uint8Array, root: number): Promise<void> {
    return this.submit(Kind.Broadcast, x, null, x.length, x instanceof Uint8Array ? DType.Bytes : DType.F32, 0, root);
  }

  async allGatherBytes(mine: Uint8Array): Promise<Uint8Array[]> {
    const all = new Uint8Array(mine.length * this.size);
    await this.submit(Kind.AllGatherBytes, mine, all, mine.length);
    return Array.from({ length: this.size }, (_, r) => all.subarray(r * mine.length, (r + 1) * mine.length));
  }

  barrier(): Promise<void> {
    return this.submit(Kind.Barrier, null, null, 0);
  }

  arrive(what: string): void {
    const id = this.arrivals++;
    this.current = what;
    this.labels.set(id, what);
    this.labels.delete(id - 10_000);
    void this.submit(Kind.Arrive, null, null, id).catch(() => {}); // a failure surfaces on the next awaited operation
  }

  /** MPI_Finalize once everything queued is done: every rank calls it at the end of a job that went well. */
  finalize(): void {
    this.addon.finalize();
  }

  /** Ends this process now (mpirun then stops the other ranks). */
  exit(code: number): never {
    return this.addon.exitNow(code);
  }
}

/** One sentence for a stall, without what to do next (the caller adds the checkpoint to resume from). */
export function describeStall(s: Stall, c: Collective): string {
  if (s.missing?.length) {
    const who = s.missing.map((m) => `rank ${m.rank} (${m.host}; it last reached ${m.lastReached})`).join(', ');
    return `${who} did not reach ${s.what} within ${s.waitedSeconds} s, so the job stops`;
  }
  if (c.rank === 0) return `${s.what} did not complete within ${s.waitedSeconds} s although every rank reached it: one stopped responding during it, so the job stops`;
  return `rank ${c.rank} waited ${s.waitedSeconds} s at ${s.what} and rank 0, which names a missing rank, did not end the job: rank 0 itself stopped responding, so the job stops`;
}
