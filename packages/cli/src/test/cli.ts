// Runs the built gpt2 binary as a user would, in a child process.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../dist/bin.js', import.meta.url));
export const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
export const FIXTURES = `${ROOT}fixtures`;

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function gpt2(
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; bin?: string; onStderr?: (chunk: string, kill: (s: NodeJS.Signals) => void) => void } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [opts.bin ?? BIN, ...args], { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env } });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      opts.onStderr?.(String(d), (s) => child.kill(s));
    });
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
