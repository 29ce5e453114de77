// Runs commands under a real `mpirun` (Open MPI) as a user would: as root where CI runs, with two
// ranks on two cores (--oversubscribe), on shared memory or on TCP over loopback (what machines use between them).
import { spawn, spawnSync } from 'node:child_process';
import { BIN, ROOT, type CliResult } from './cli.js';

/** Why mpirun cannot run here, or undefined. */
export const NO_MPIRUN = spawnSync('mpirun', ['--version']).status === 0 ? undefined : 'mpirun is not installed (apt-get install openmpi-bin libopenmpi3)';

/** Open MPI's TCP path on loopback, as between machines. */
export const TCP = ['--mca', 'pml', 'ob1', '--mca', 'btl', 'tcp,self', '--mca', 'btl_tcp_if_include', 'lo'];

export function mpirun(
  n: number, command: string[], opts: { mca?: string[]; env?: Record<string, string>; onStderr?: (text: string) => void } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const env = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', ...opts.env };
    const child = spawn('mpirun', ['-n', String(n), '--oversubscribe', ...(opts.mca ?? []), ...command], { cwd: ROOT, env });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      opts.onStderr?.(stderr);
    });
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** `gpt2 ARGS` under mpirun. */
export const gpt2Ranks = (n: number, args: string[], opts: Parameters<typeof mpirun>[2] = {}) => mpirun(n, [process.execPath, BIN, ...args], opts);

/** The pid of rank r of a running job whose ranks' command lines contain `marker`. */
export function rankPid(marker: string, r: number): number | undefined {
  const ps = spawnSync('pgrep', ['-f', marker], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
  for (const pid of ps) {
    const env = spawnSync('cat', [`/proc/${pid}/environ`], { encoding: 'utf8' }).stdout ?? '';
    if (env.split('\0').includes(`OMPI_COMM_WORLD_RANK=${r}`)) return pid;
  }
  return undefined;
}
