// gpt2 selftest: the conformance suite `pnpm test` runs (the same cases, fixtures and tolerances,
// from @gpt2/core/selftest) on each backend that starts here, or on one; a table of cases with
// the worst error of each, as a fraction of its tolerance. Exit 0 only when every case passes.
import { GPT2Error, registeredBackends, resolveBackend, type Precision } from '@gpt2/core';
import { existsSync } from 'node:fs';
import { fixturesDir, runSelftest, type CaseResult } from '@gpt2/core/selftest';
import { registerAll } from '../backends.js';

export interface SelftestFlags {
  backend: string; // a backend's name, or 'all'
  threads?: number;
  precision?: Precision;
  json?: boolean;
}

const fmt = (x: number) => (x === Infinity ? 'inf' : x === 0 ? '0' : x.toExponential(1));

function row(r: CaseResult): string {
  const w = r.worst;
  const margin = w ? `${fmt(w.err)} of ${fmt(w.tol)}` : '';
  return `  ${r.passed ? 'pass' : 'FAIL'}  ${r.name.padEnd(64)} ${margin.padEnd(18)} ${String(r.ms).padStart(6)} ms${r.error ? `\n        ${r.error}` : ''}`;
}

export async function runSelftestCommand(f: SelftestFlags): Promise<void> {
  if (!existsSync(fixturesDir())) {
    throw new GPT2Error(`The conformance fixtures were not found at ${fixturesDir()}; set GPT2_FIXTURES to a fixtures folder (the repository's fixtures/).`);
  }
  registerAll(f.threads ?? 0);
  const precision = f.precision ?? 'fp32';
  const names = f.backend === 'all' ? registeredBackends() : [f.backend];
  const report: { backend: string; device?: Record<string, string>; skipped?: string; results?: CaseResult[] }[] = [];
  const log = (s: string) => !f.json && process.stdout.write(s + '\n');
  for (const name of names) {
    let be;
    try {
      be = (await resolveBackend(name, { precision })).backend;
    } catch (err) {
      // a backend asked for by name must start; with 'all', those that cannot are listed with why
      if (f.backend !== 'all') throw err;
      report.push({ backend: name, skipped: (err as Error).message });
      log(`${name}: skipped: ${(err as Error).message}`);
      continue;
    }
    const device = be.describe();
    log(`${name} at --precision ${precision}: ${Object.values(device).join(', ')}`);
    log(`  ${'    '}  ${'case'.padEnd(64)} ${'worst error of tol'.padEnd(18)} ${'time'.padStart(9)}`);
    const results = await runSelftest(be, precision, (r) => log(row(r)));
    be.dispose();
    const failed = results.filter((r) => !r.passed).length;
    log(`${name}: ${results.length - failed} passed, ${failed} failed\n`);
    report.push({ backend: name, device, results });
  }
  const ran = report.filter((r) => r.results);
  const failed = ran.flatMap((r) => r.results!.filter((c) => !c.passed).map((c) => `${r.backend}: ${c.name}`));
  if (f.json) process.stdout.write(JSON.stringify({ precision, backends: report }, null, 2) + '\n');
  if (ran.length === 0) throw new GPT2Error(`No backend could run the selftest at --precision ${precision}; gpt2 info says why each is unavailable.`);
  if (failed.length) throw new GPT2Error(`${failed.length} conformance case${failed.length > 1 ? 's' : ''} failed (${failed.slice(0, 3).join('; ')}${failed.length > 3 ? '; ...' : ''}): this backend computes GPT-2 wrongly here; report it with gpt2 info's output.`);
}
