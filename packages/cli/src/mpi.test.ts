// Data-parallel training under a real mpirun (Open MPI): the float64 fixture's steps split across
// ranks on every host-memory backend, DDP's equivalence with one process at the global batch, ZeRO-1,
// resuming with another number of ranks, and the faults: a rank killed, a rank stalled, no libmpi.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors } from '@gpt2/core';
import { createCpuBackend } from '@gpt2/backend-cpu';
import { gpt2, ROOT } from './test/cli.js';
import { gpt2Ranks, mpirun, NO_MPIRUN, rankPid, TCP } from './test/mpirun.js';

const skip = NO_MPIRUN && !process.env.GPT2_EXPECT_MPI ? NO_MPIRUN : undefined;
if (NO_MPIRUN && process.env.GPT2_EXPECT_MPI) throw new Error(`GPT2_EXPECT_MPI is set but ${NO_MPIRUN}`);
if (skip) console.warn(`skipping the mpirun tests: ${skip}`);

const STEPS = fileURLToPath(new URL('../dist/test/fixture-steps.js', import.meta.url));
let dir: string;
// a small model and text, trained a few steps: every save, evaluation and exchange still happens
const tiny = () => [
  'train', join(dir, 'data.txt'), '--init', join(dir, 'c64.json'), '--train-tokenizer', '300', '--block-size', '32', '--lr', '3e-3', '--warmup', '2',
  '--sample-every', '0', '--eval-every', '3', '--backend', 'cpu', '--threads', '1', '--json',
];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gpt2-mpi-'));
  writeFileSync(join(dir, 'data.txt'), readFileSync(join(ROOT, 'examples/shakespeare.txt'), 'utf8').slice(0, 20_000));
  writeFileSync(join(dir, 'c64.json'), JSON.stringify({ model_type: 'gpt2', vocab_size: 50257, n_positions: 64, n_embd: 64, n_layer: 2, n_head: 2 }));
});

const losses = (run: string) => readFileSync(join(dir, run, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((m) => m.loss !== undefined).map((m) => m.loss as number);
function weights(path: string): Map<string, Float32Array> {
  const b = readFileSync(path), st = parseSafetensors(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), path);
  return new Map([...st.tensors.keys()].map((k) => [k, st.float32(k)]));
}
function maxDiff(a: string, b: string): number {
  const x = weights(a), y = weights(b);
  let worst = 0;
  for (const [k, v] of x) v.forEach((e, i) => (worst = Math.max(worst, Math.abs(e - y.get(k)![i]))));
  return worst;
}

// --precision bf16 on the cpu backend needs AVX512-BF16 or AMX (and oneDNN); the reference emulation runs anywhere
const noCpuBf16 = await createCpuBackend({ precision: 'bf16' }).then((be) => (be.dispose(), undefined), (err: Error) => err.message);

async function fixtureSteps(backend: string, zero: string, mca: readonly string[], precision: string): Promise<void> {
  const r = await mpirun(2, [process.execPath, STEPS, backend, zero, precision], { mca: [...mca] });
  expect(r.stderr.replace(/\n--+[\s\S]*$/, '')).toBe('');
  expect(r.stdout).toBe(`ok ${backend} zero=${zero} ${precision} ranks=2\n`);
  expect(r.code).toBe(0);
}

describe.skipIf(skip)('data-parallel training under mpirun', () => {
  it.each([
    ['reference', '0', [], 'fp32'], ['cpu', '0', [], 'fp32'], ['cpu', '1', [], 'fp32'], ['wasm', '1', [], 'fp32'], ['cpu', '0', TCP, 'fp32'], ['cpu', '1', TCP, 'fp32'],
    ['reference', '1', [], 'bf16'],
  ] as const)('%s backend, zero %s%s, %s: the float64 fixture\'s AdamW steps with the batch split across 2 ranks', fixtureSteps);
  // bf16 copies of the weights through the broadcast and ZeRO-1's gather, on the cpu backend where it runs bf16
  describe.skipIf(noCpuBf16)(`cpu backend at --precision bf16${noCpuBf16 ? ` (skipped: ${noCpuBf16})` : ''}`, () => {
    it.each([['cpu', '0', [], 'bf16'], ['cpu', '1', [], 'bf16']] as const)('%s backend, zero %s%s, %s: the fixture\'s steps split across 2 ranks', fixtureSteps);
  });

  it('2 ranks at --batch-size 2 train as one process at --batch-size 4 (DDP), with and without ZeRO-1, on shared memory and TCP', async () => {
    const hellaswag = ['--eval-hellaswag', join(ROOT, 'fixtures/hellaswag/items.jsonl'), '--hellaswag-limit', '5'];
    const one = await gpt2([...tiny(), '--batch-size', '4', '--steps', '6', ...hellaswag, '--out', join(dir, 'one')]);
    expect(one.stderr).not.toMatch(/error/);
    const two = await gpt2Ranks(2, [...tiny(), '--batch-size', '2', '--steps', '6', '--save-every', '3', ...hellaswag, '--out', join(dir, 'two')]);
    expect(two.code, two.stderr).toBe(0);
    const zero = await gpt2Ranks(2, [...tiny(), '--batch-size', '2', '--steps', '6', '--zero', '1', '--out', join(dir, 'zero')], { mca: TCP });
    expect(zero.code, zero.stderr).toBe(0);
    // one progress line and one summary: rank 0's
    expect(two.stdout.trim().split('\n')).toHaveLength(1);
    expect(two.stderr.match(/^run: /gm)).toHaveLength(1);
    for (const run of ['two', 'zero']) {
      const [a, b] = [losses('one'), losses(run)];
      expect(b).toHaveLength(6);
      b.forEach((l, i) => expect(Math.abs(l - a[i])).toBeLessThan(1e-5));
      expect(maxDiff(join(dir, 'one/checkpoint-00000006/model.safetensors'), join(dir, run, 'checkpoint-00000006/model.safetensors'))).toBeLessThan(1e-4);
    }
    // HellaSwag's items shared out across the ranks (3 and 2) and summed: at step 0, the same weights, the same scores as one process
    const hs = (run: string) => readFileSync(join(dir, run, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((m) => m.hellaswagAccNorm !== undefined);
    expect(hs('two').map((m) => m.step)).toEqual([0, 3, 6]);
    expect(hs('two')[0]).toEqual(hs('one')[0]);
    expect(two.stderr).toMatch(/step 0: hellaswag acc [\d.]+, acc_norm [\d.]+ \(5 items\)/);
    // ZeRO-1's checkpoint holds the whole moments, gathered: they match the unsharded run's
    expect(maxDiff(join(dir, 'one/checkpoint-00000006/optimizer.safetensors'), join(dir, 'zero/checkpoint-00000006/optimizer.safetensors'))).toBeLessThan(1e-6);
    // resumed in one process at the same global batch (4 x 1 for 2 x 2): it continues as the 2-rank run did
    const resumed = await gpt2([...tiny(), '--batch-size', '4', '--steps', '6', '--resume', join(dir, 'two/checkpoint-00000003')]);
    expect(resumed.stderr).not.toMatch(/error|note: the checkpoint drew/);
    expect(maxDiff(join(dir, 'one/checkpoint-00000006/model.safetensors'), join(dir, 'two/checkpoint-00000006/model.safetensors'))).toBeLessThan(1e-4);
    // with another global batch it says what changes
    const other = await gpt2([...tiny(), '--batch-size', '2', '--steps', '4', '--resume', join(dir, 'two/checkpoint-00000003')]);
    expect(other.stderr).toMatch(/note: the checkpoint drew 4 windows per micro-batch and this run draws 2 \(1 rank\(s\) x --batch-size 2\)/);
  });

  it('gpt2 prepare on 2 ranks: each tokenizes its share of the files, rank 0 writes the shards one process writes', async () => {
    const files = ['a', 'b', 'c'].map((n, i) => {
      const p = join(dir, `prep-${n}.txt`);
      writeFileSync(p, readFileSync(join(ROOT, 'examples/shakespeare.txt'), 'utf8').slice(i * 7000, (i + 1) * 7000));
      return p;
    });
    const args = (out: string) => ['prepare', ...files, '--out', join(dir, out), '--shard-size', '1500', '--workers', '1', '--json'];
    const one = await gpt2(args('prep-one'));
    expect(one.code, one.stderr).toBe(0);
    const two = await gpt2Ranks(2, args('prep-two'));
    expect(two.code, two.stderr).toBe(0);
    expect(JSON.parse(two.stdout.trim())).toMatchObject({ ranks: 2, tokens: JSON.parse(one.stdout).tokens });
    const names = readdirSync(join(dir, 'prep-one')).sort();
    expect(readdirSync(join(dir, 'prep-two')).sort()).toEqual(names);
    for (const f of names) expect(readFileSync(join(dir, 'prep-two', f)).equals(readFileSync(join(dir, 'prep-one', f))), f).toBe(true);
  });

  it('a killed rank ends the job, naming the last complete checkpoint; --resume continues', async () => {
    const args = [...tiny(), '--batch-size', '2', '--steps', '100000', '--save-every', '5', '--eval-every', '0', '--out', join(dir, 'killed')];
    let killed = false;
    const r = await gpt2Ranks(2, args, {
      onStderr: (text) => {
        if (killed || !/saved .*checkpoint-00000010/.test(text)) return;
        killed = true;
        process.kill(rankPid(join(dir, 'killed'), 1)!, 'SIGKILL');
      },
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/mpirun noticed that process rank 1 .* exited on signal 9/);
    expect(r.stderr).toMatch(/stopping: mpirun is ending the job; .* else the last complete checkpoint is .*killed\/checkpoint-000000\d\d: continue with gpt2 train --resume .*killed/);
    const last = Number(readdirSync(join(dir, 'killed')).filter((d) => /^checkpoint-\d+$/.test(d)).sort().at(-1)!.slice(11));
    const again = await gpt2Ranks(2, ['train', '--resume', join(dir, 'killed'), '--steps', String(last + 2), '--backend', 'cpu', '--threads', '1', '--json']);
    expect(again.stderr).not.toMatch(/error/);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).steps).toBe(last + 2);
    // the steps the killed job logged past its last checkpoint are not counted twice
    const steps = readFileSync(join(dir, 'killed', 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).step as number);
    expect(steps).toEqual(Array.from({ length: last + 2 }, (_, i) => i + 1));
  });

  it('a stalled rank is named when the collective timeout passes, and the job stops', async () => {
    const args = [...tiny(), '--batch-size', '2', '--steps', '100000', '--save-every', '5', '--eval-every', '0', '--collective-timeout', '2', '--out', join(dir, 'stalled')];
    let pid: number | undefined;
    const r = await gpt2Ranks(2, args, {
      onStderr: (text) => {
        if (pid || !/saved .*checkpoint-00000005/.test(text)) return;
        pid = rankPid(join(dir, 'stalled'), 1)!;
        process.kill(pid, 'SIGSTOP');
      },
    });
    if (pid) spawnKill(pid);
    expect(r.code).not.toBe(0);
    // named, unless it stopped in the instant between telling rank 0 it arrived and finishing the exchange
    const named = /error: rank 1 \(.*; it last reached .*\) did not reach .* within [23] s, so the job stops/;
    const unnamed = /error: .* did not complete within [23] s although every rank reached it: one stopped responding during it, so the job stops/;
    expect(named.test(r.stderr) || unnamed.test(r.stderr), r.stderr).toBe(true);
    expect(r.stderr).toMatch(/; the last complete checkpoint is .*stalled\/checkpoint-\d+: continue with gpt2 train --resume .*stalled\./);
  });

  it('refuses in one sentence: no libmpi, other data or flags on one rank', async () => {
    const noLib = await gpt2Ranks(1, [...tiny(), '--steps', '1', '--out', join(dir, 'nolib')], { env: { GPT2_MPI_LIB: '/nonexistent/libmpi.so.40' } });
    expect(noLib.code).not.toBe(0);
    expect(noLib.stderr).toMatch(/error: This process was started by mpirun but \/nonexistent\/libmpi.so.40 could not be loaded \(.*\); install Open MPI \(Debian and Ubuntu: apt-get install openmpi-bin libopenmpi3\) on every machine/);
    // MPMD: each rank its own folder, the same relative path to different text
    for (const [d, text] of [['a', 'To be or not to be. '], ['b', 'All the world is a stage. ']]) {
      mkdirSync(join(dir, d), { recursive: true });
      writeFileSync(join(dir, d, 'data.txt'), text.repeat(300));
    }
    const common = ['train', 'data.txt', '--init', join(dir, 'c64.json'), '--block-size', '16', '--steps', '1', '--backend', 'cpu', '--threads', '1', '--out', join(dir, 'mpmd')];
    const app = (d: string) => ['-n', '1', '-wdir', join(dir, d), process.execPath, fileURLToPath(new URL('../dist/bin.js', import.meta.url)), ...common];
    const data = await mpirun(1, [...app('a').slice(2), ':', ...app('b')]);
    expect(data.code).not.toBe(0);
    expect(data.stderr).toMatch(/error: rank 1 \(.*\) read other training data than rank 0 \(.*\) from the same paths; every machine needs the same files at the same paths\./);
    const flags = await mpirun(1, [...app('a').slice(2), ':', ...app('a'), '--lr', '1e-3']);
    expect(flags.stderr).toMatch(/error: rank 1 \(.*\) was started with other options or data paths than rank 0/);
    expect(existsSync(join(dir, 'mpmd', 'checkpoint-00000001'))).toBe(false);
  });
});

function spawnKill(pid: number) {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}
