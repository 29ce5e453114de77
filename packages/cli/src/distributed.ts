// A process that mpirun started joins its job here (@gpt2/mpi); any other gets core's
// singleProcess. Only rank 0 writes and prints: its RunDir and Reporter are the real ones, the
// other ranks' are silent (FollowerRunDir), and that choice is made here alone.
import { singleProcess, type Collective } from '@gpt2/core';
import { describeStall, launchedBy, MpiCollective, type Stall } from '@gpt2/mpi';
import { Reporter } from './report.js';
import { FollowerRunDir, RunDir } from './run-dir.js';

let job: MpiCollective | undefined;

/** This process's place in an mpirun job (MPI_Init_thread on first call), or one process alone. */
export async function joinJob(timeoutSeconds = 300): Promise<Collective> {
  if (job) return job;
  if (!launchedBy()) return singleProcess;
  job = await MpiCollective.start({ timeoutSeconds });
  return job;
}

/** What to print when a collective waits past the timeout (the caller knows the checkpoint to resume from). */
export function onStall(say: (s: Stall, c: Collective) => string): void {
  if (job) job.onStall = (s, c) => process.stderr.write(`error: ${say(s, c)}\n`);
}

export { describeStall };

/** The run folder as this rank sees it: rank 0 writes it, the others only take part in saving. */
export function runDirFor(comm: Collective, dir: string): RunDir {
  return comm.rank === 0 ? new RunDir(dir) : new FollowerRunDir(dir);
}

/** Progress and notes: rank 0's alone. */
export function reporterFor(comm: Collective): Reporter {
  return comm.rank === 0 ? new Reporter(false) : new Reporter(true, process.stderr, false);
}

/**
 * The end of a command in a job: MPI_Finalize when it went well; after an error this rank exits at
 * once (mpirun then stops the others). A rank other than 0 first waits a moment, so that an error
 * every rank meets is printed once, by rank 0, before mpirun stops the rest.
 */
export async function leaveJob(code: number, message?: string): Promise<void> {
  if (!job) {
    if (message) process.stderr.write(message);
    return;
  }
  if (code === 0) return job.finalize();
  if (job.rank !== 0) await new Promise((r) => setTimeout(r, 2000));
  if (message) process.stderr.write(job.rank === 0 ? message : `rank ${job.rank} (${job.host}): ${message}`);
  job.exit(code);
}
