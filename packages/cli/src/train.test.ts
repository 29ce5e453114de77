import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, gpt2 } from './test/cli.js';
import { writeDirAside } from './run-dir.js';
import { createCpuBackend } from '@gpt2/backend-cpu';

// A small tmpfs for the disk-full cases: mounting needs root (CI runs as root); elsewhere they skip.
function smallDisk(path: string, size: string): string | undefined {
  mkdirSync(path, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', path], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `a tmpfs could not be mounted (${(r.stderr || r.error?.message || '').trim()}); run the tests as root`;
}
const unmount = (path: string) => spawnSync('umount', [path]);

// --precision bf16 on the cpu backend needs oneDNN on a CPU with AVX512-BF16 or AMX
const noCpuBf16 = await createCpuBackend({ precision: 'bf16' }).then((be) => (be.dispose(), undefined), (err: Error) => err.message);

let dir: string, data: string, config: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gpt2-train-'));
  data = join(dir, 'shakespeare-30k.txt');
  writeFileSync(data, readFileSync(join(ROOT, 'examples/shakespeare.txt'), 'utf8').slice(0, 30_000));
  config = join(dir, 'tiny.json');
  writeFileSync(config, JSON.stringify({ model_type: 'gpt2', vocab_size: 50257, n_positions: 64, n_embd: 32, n_layer: 2, n_head: 2 }));
  // a text small enough to over-fit in seconds, and held-out text from elsewhere in the play
  const text = readFileSync(join(ROOT, 'examples/shakespeare.txt'), 'utf8');
  writeFileSync(join(dir, 'small.txt'), text.slice(0, 4000));
  writeFileSync(join(dir, 'heldout.txt'), text.slice(20_000, 26_000));
  writeFileSync(join(dir, 'c64.json'), JSON.stringify({ model_type: 'gpt2', vocab_size: 50257, n_positions: 64, n_embd: 64, n_layer: 2, n_head: 2 }));
});
// training that over-fits: 16 steps an epoch, validation on other text
const overfit = (run: string, extra: string[]) => [
  'train', join(dir, 'small.txt'), '--init', join(dir, 'c64.json'), '--train-tokenizer', '400', '--batch-size', '4', '--block-size', '32', '--lr', '1e-2',
  '--warmup', '2', '--lr-schedule', 'constant', '--sample-every', '0', '--val-data', join(dir, 'heldout.txt'), '--out', run, ...extra,
];

const metrics = (run: string) => readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const losses = (run: string) => metrics(run).filter((m) => m.loss !== undefined).map((m) => [m.step, m.loss]);
const common = ['--init', 'TINY', '--train-tokenizer', '400', '--batch-size', '4', '--block-size', '32', '--lr', '3e-3', '--warmup', '2', '--sample-every', '0', '--eval-every', '10'];
const args = (run: string, extra: string[]) => ['train', 'DATA', ...common, '--out', run, ...extra].map((a) => (a === 'TINY' ? config : a === 'DATA' ? data : a));

describe('gpt2 train', () => {
  it('trains from scratch: the loss falls, and the run holds checkpoints, metrics, a loss curve and an HF model', async () => {
    const run = join(dir, 'scratch');
    const r = await gpt2(args(run, ['--steps', '30', '--save-every', '10', '--keep', '2', '--json']));
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.valLossEnd).toBeLessThan(summary.valLossStart - 0.5);
    const l = losses(run).map(([, x]) => x);
    expect(l.length).toBe(30);
    expect((l[27] + l[28] + l[29]) / 3).toBeLessThan((l[0] + l[1] + l[2]) / 3 - 0.5);
    expect(readdirSync(run).filter((d) => d.startsWith('checkpoint-'))).toEqual(['checkpoint-00000020', 'checkpoint-00000030']);
    expect(readFileSync(join(run, 'loss.svg'), 'utf8')).toMatch(/^<svg[\s\S]*validation loss[\s\S]*<\/svg>\n$/);
    expect(readdirSync(join(run, 'model')).sort()).toEqual(['config.json', 'merges.txt', 'model.safetensors', 'vocab.json']);
    expect(JSON.parse(readFileSync(join(run, 'model/config.json'), 'utf8')).vocab_size).toBe(400);
    expect(readdirSync(run).filter((d) => d.includes('.tmp-'))).toEqual([]);
    // the saved model generates through the CLI
    const g = await gpt2(['generate', '--model', join(run, 'model'), '--prompt', 'ROMEO:', '--max-new-tokens', '10', '--seed', '1', '--json']);
    expect(g.code, g.stderr).toBe(0);
    expect(JSON.parse(g.stdout).samples[0].tokens.length).toBeGreaterThan(0);
  });

  it.skipIf(noCpuBf16)(`--precision bf16 on the cpu backend: --resume continues with exactly the uninterrupted losses, and says so when --precision is left out${noCpuBf16 ? ` (skipped: ${noCpuBf16})` : ''}`, async () => {
    const full = join(dir, 'bf16-full'), cut = join(dir, 'bf16-cut'), bf16 = ['--backend', 'cpu', '--threads', '2', '--precision', 'bf16', '--log-every', '1'];
    expect((await gpt2(args(full, ['--steps', '6', '--save-every', '0', ...bf16]))).code).toBe(0);
    expect((await gpt2(args(cut, ['--steps', '3', '--save-every', '3', ...bf16]))).code).toBe(0);
    const resumed = await gpt2(['train', '--resume', cut, '--steps', '6', ...bf16]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).not.toMatch(/note: this run trained/);
    expect(losses(cut)).toEqual(losses(full)); // the weights' bf16 copies were rebuilt from the checkpoint, not left stale
    const fp32 = await gpt2(['train', '--resume', cut, '--steps', '7', '--backend', 'cpu']);
    expect(fp32.code, fp32.stderr).toBe(0);
    expect(fp32.stderr).toMatch(/note: this run trained with --precision bf16 and continues in fp32 \(--backend and --precision are not taken from run\.json\); add --precision bf16 to continue as it began\./);
  });

  it('Ctrl-C saves a checkpoint and exits 130; --resume then continues with exactly the uninterrupted losses', async () => {
    const full = join(dir, 'full'), cut = join(dir, 'cut');
    expect((await gpt2(args(full, ['--steps', '8', '--save-every', '0', '--log-every', '1']))).code).toBe(0);
    let sent = false;
    const r = await gpt2(args(cut, ['--steps', '8', '--save-every', '0', '--log-every', '1']), {
      onStderr: (chunk, kill) => {
        if (!sent && /step 3\/8/.test(chunk)) {
          sent = true;
          kill('SIGINT');
        }
      },
    });
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/interrupted at step \d; checkpoint saved to .*checkpoint-0000000\d\. Continue with: gpt2 train --resume/);
    const stopped = losses(cut).length;
    expect(stopped).toBeLessThan(8);
    const resumed = await gpt2(['train', '--resume', cut]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(losses(cut)).toEqual(losses(full)); // bit-for-bit the same losses at every step
  });

  it.each([
    ['an empty file', () => writeFileSync(join(dir, 'empty.txt'), ''), 'empty.txt', [], /contains no text; give a file with some/],
    ['a non-UTF-8 file', () => writeFileSync(join(dir, 'latin1.txt'), Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9]), Buffer.from(' au lait')])), 'latin1.txt', [], /latin1\.txt is not UTF-8 text: invalid byte 0xe9 at offset 3; convert it first/],
    ['a block size beyond the context', () => {}, 'shakespeare-30k.txt', ['--block-size', '100'], /--block-size 100 is larger than the model's context of 64/],
    ['a missing file', () => {}, 'nope.txt', [], /No file matches '.*nope\.txt'/],
  ])('%s ends in one clear sentence, exit 1', async (_, make, file, extra, pattern) => {
    make();
    const a = args(join(dir, 'bad'), ['--steps', '1', ...(extra as string[])]);
    a[1] = join(dir, file as string);
    const r = await gpt2(a);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(pattern);
  });

  it('stops at a non-finite loss, names the step and the last good checkpoint, and keeps it', async () => {
    const run = join(dir, 'diverge');
    const r = await gpt2(args(run, ['--steps', '40', '--lr', '1e12', '--warmup', '0', '--clip', '0', '--save-every', '1', '--eval-every', '0']));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: The (loss|gradient norm) became (NaN|-?Infinity) at step (\d+); lower the learning rate .* The last good checkpoint is .*checkpoint-\d+\./);
    const step = Number(/at step (\d+)/.exec(r.stderr)![1]);
    const kept = readdirSync(run).filter((d) => d.startsWith('checkpoint-'));
    expect(kept.at(-1)).toBe(`checkpoint-${String(step - 1).padStart(8, '0')}`); // the step before, never the bad one
  });

  it('one run per folder: a new run into an old one is refused before any work; --overwrite replaces it', async () => {
    const run = join(dir, 'again');
    expect((await gpt2(args(run, ['--steps', '4', '--save-every', '2']))).code).toBe(0);
    const again = await gpt2(args(run, ['--steps', '2']));
    expect(again.code).toBe(1);
    expect(again.stderr.trim()).toBe(`error: ${run} already holds a run; continue it with --resume ${run}, or replace it with --overwrite (or choose another --out).`);
    expect(readdirSync(run).filter((d) => d.startsWith('checkpoint-'))).toEqual(['checkpoint-00000002', 'checkpoint-00000004']); // untouched
    const both = await gpt2(['train', '--resume', run, '--overwrite']);
    expect(both.stderr).toMatch(/--overwrite starts a new run in place of an old one; it does not go with --resume\./);
    const over = await gpt2(args(run, ['--steps', '3', '--save-every', '1', '--keep', '5']));
    expect(over.code, over.stderr).not.toBe(0); // still refused without the flag
    const replaced = await gpt2(args(run, ['--steps', '3', '--save-every', '1', '--keep', '5', '--overwrite']));
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(replaced.stderr).toMatch(/--overwrite: removing the old run in /);
    expect(readdirSync(run).filter((d) => d.startsWith('checkpoint-'))).toEqual(['checkpoint-00000001', 'checkpoint-00000002', 'checkpoint-00000003']);
    expect(metrics(run).filter((m) => m.loss !== undefined).map((m) => m.step)).toEqual([1, 2, 3]); // the new run's metrics only
  });

  it('a run folder is locked while it trains: a second process is refused naming the pid; a dead holder\'s lock is taken over', async () => {
    const run = join(dir, 'locked');
    let second: Awaited<ReturnType<typeof gpt2>> | undefined, holder = 0;
    const first = await gpt2(args(run, ['--steps', '100000', '--save-every', '2', '--eval-every', '0', '--log-every', '1']), {
      onStderr: (chunk, kill) => {
        if (holder || !/saved .*checkpoint-/.test(chunk)) return;
        holder = JSON.parse(readFileSync(join(run, 'run.lock'), 'utf8')).pid;
        void gpt2(['train', '--resume', run, '--steps', '100000']).then((r) => {
          second = r;
          kill('SIGKILL'); // dies without releasing its lock
        });
      },
    });
    expect(first.signal).toBe('SIGKILL');
    expect(second!.code).toBe(1);
    expect(second!.stderr.trim()).toMatch(new RegExp(`^error: ${run} is in use by process ${holder} \\(training since [0-9T:.-]+Z\\); wait for it to finish or stop it, then run this again\\.$`));
    expect(existsSync(join(run, 'run.lock'))).toBe(true); // left by the killed process
    const last = Number(readdirSync(run).filter((d) => /^checkpoint-\d+$/.test(d)).at(-1)!.slice(11)); // not a save the kill cut short (checkpoint-N.tmp-PID)
    const resumed = await gpt2(['train', '--resume', run, '--steps', String(last + 1)]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(new RegExp(`note: took over .*run\\.lock from process ${holder}, which is gone`));
    expect(existsSync(join(run, 'run.lock'))).toBe(false); // released at exit
  });

  it('a disk too full for the next checkpoint: one sentence before writing, nothing half-written, and --resume from the last one finishes', async (ctx) => {
    const disk = join(dir, 'small-disk'), why = smallDisk(disk, '2m');
    if (why) return ctx.skip(why);
    try {
      const run = join(disk, 'run');
      const r = await gpt2(args(run, ['--steps', '60', '--save-every', '1', '--keep', '100', '--eval-every', '0']));
      expect(r.code).toBe(1);
      const m = /error: Not enough space to write (.*checkpoint-(\d+)): it needs [\d.]+ [KM]B and .* has [\d.]+ [KM]B free; the last complete checkpoint is (.*checkpoint-(\d+)): free some space, then continue with: gpt2 train --resume (.*)\n/.exec(r.stderr);
      expect(m, r.stderr).not.toBeNull();
      expect(Number(m![4])).toBe(Number(m![2]) - 1);
      expect(m![5]).toBe(run);
      expect(readdirSync(run).filter((d) => d.includes('.tmp-'))).toEqual([]);
      const ckpts = readdirSync(run).filter((d) => d.startsWith('checkpoint-'));
      for (const c of ckpts.slice(0, -1)) rmSync(join(run, c), { recursive: true }); // the user frees space
      const resumed = await gpt2(['train', '--resume', run, '--steps', String(Number(m![4]) + 1), '--keep', '1']);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(existsSync(join(run, 'model', 'model.safetensors'))).toBe(true);
    } finally {
      unmount(disk);
    }
  });

  it('a write that fails mid-save (past the free-space check) removes its temporary folder and says what it needed', async (ctx) => {
    const disk = join(dir, 'tiny-disk'), noMount = smallDisk(disk, '64k');
    if (noMount && process.getuid?.() === 0) return ctx.skip(`${noMount}, and root writes through file permissions`);
    // as root: a 64 KiB tmpfs, where 40 one-byte files pass the byte count but each takes a 4 KiB
    // page (ENOSPC); elsewhere: a folder without write permission (EACCES), on the same code path
    if (noMount) spawnSync('chmod', ['555', disk]);
    const code = noMount ? 'EACCES' : 'ENOSPC';
    try {
      const files = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`f${i}`, 'x']));
      await expect(writeDirAside(join(disk, 'ckpt'), files)).rejects.toThrowError(new RegExp(`^Writing .*tiny-disk/ckpt failed \\(${code}\\): it needs 1 KB and .*tiny-disk has [\\d.]+ [KM]B free$`));
      expect(readdirSync(disk)).toEqual([]);
    } finally {
      if (noMount) spawnSync('chmod', ['755', disk]);
      else unmount(disk);
    }
  });

  it('--resume removes the temporary folders of a save whose process is gone', async () => {
    const run = join(dir, 'stale');
    expect((await gpt2(args(run, ['--steps', '2', '--save-every', '1']))).code).toBe(0);
    mkdirSync(join(run, 'checkpoint-00000003.tmp-999999999'));
    writeFileSync(join(run, 'checkpoint-00000003.tmp-999999999', 'model.safetensors'), 'half');
    const r = await gpt2(['train', '--resume', run, '--steps', '3']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/note: removed .*checkpoint-00000003\.tmp-999999999, left by an interrupted save/);
    expect(readdirSync(run).filter((d) => d.includes('.tmp-'))).toEqual([]);
  });

  it('trains on what there is, with a warning, when the data is shorter than one block', async () => {
    writeFileSync(join(dir, 'short.txt'), 'To be, or not to be, that is the question.');
    const r = await gpt2(['train', join(dir, 'short.txt'), '--init', config, '--train-tokenizer', '300', '--batch-size', '4', '--block-size', '32', '--steps', '2', '--val-split', '0', '--out', join(dir, 'short')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: the training data has only \d+ tokens, less than one block of 32 \+ 1; training on blocks of \d+\./);
    expect(existsSync(join(dir, 'short/model/model.safetensors'))).toBe(true);
  });
  it('evaluates each epoch with accuracy, keeps best/, stops early, and model/ holds the best weights', async () => {
    const run = join(dir, 'epochs');
    const r = await gpt2(overfit(run, ['--steps', '400', '--eval-every', 'epoch', '--save-every', 'epoch', '--keep', '2', '--early-stop', '2', '--json']));
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    const evals = metrics(run).filter((m) => m.valLoss !== undefined && m.step > 0);
    // one evaluation per epoch: at the steps whose tokens cross a multiple of the training set
    const epochsPerStep = evals[0].epoch / evals[0].step;
    expect(evals.map((m) => Math.floor(m.epoch))).toEqual(evals.map((_, i) => i + 1));
    expect(evals.every((m) => m.epoch % 1 < epochsPerStep && m.valAccuracy > 0 && m.valAccuracy < 1)).toBe(true);
    // the best is the lowest validation loss, and early stopping came 2 evaluations after it
    const best = evals.reduce((a, b) => (b.valLoss < a.valLoss ? b : a));
    expect(summary.best).toEqual({ step: best.step, valLoss: best.valLoss, valAccuracy: best.valAccuracy });
    expect(summary.stoppedEarly).toBe(true);
    expect(evals.at(-1).step).toBe(summary.steps);
    expect(evals.filter((m) => m.step > best.step).length).toBe(2);
    expect(r.stderr).toContain(`early stop: the validation loss has not improved for 2 evaluations (best ${best.valLoss.toFixed(4)} at step ${best.step}); stopping at step ${summary.steps} of 400`);
    const info = JSON.parse(readFileSync(join(run, 'run.json'), 'utf8'));
    expect(info).toMatchObject({ best: summary.best, final: 'best', stoppedEarly: summary.steps });
    // best/ survives --keep 2, and model/ holds its weights, not the last
    expect(JSON.parse(readFileSync(join(run, 'best/best.json'), 'utf8')).step).toBe(best.step);
    expect(readFileSync(join(run, 'model/model.safetensors')).equals(readFileSync(join(run, 'best/model.safetensors')))).toBe(true);
    const last = join(run, `checkpoint-${String(summary.steps).padStart(8, '0')}`);
    expect(readFileSync(join(last, 'model.safetensors')).equals(readFileSync(join(run, 'model/model.safetensors')))).toBe(false);
    expect(readdirSync(run).filter((d) => d.startsWith('checkpoint-')).length).toBe(2);
    const svg = readFileSync(join(run, 'loss.svg'), 'utf8');
    for (const label of ['validation accuracy', '>epoch 1<', `>best: step ${best.step}<`]) expect(svg).toContain(label);
    // gpt2 eval reports accuracy too
    const e = await gpt2(['eval', '--model', join(run, 'model'), '--data', data, '--json']);
    expect(JSON.parse(e.stdout).accuracy).toBeGreaterThan(0);
  });

  it('--resume keeps the best checkpoint and the patience count exactly', async () => {
    const flags = ['--eval-every', '5', '--save-every', '5', '--keep', '10', '--early-stop', '50'];
    const full = join(dir, 'best-full'), split = join(dir, 'best-split');
    expect((await gpt2(overfit(full, ['--steps', '60', ...flags]))).code).toBe(0);
    expect((await gpt2(overfit(split, ['--steps', '30', ...flags]))).code).toBe(0);
    const r = await gpt2(['train', '--resume', split, '--steps', '60']);
    expect(r.code, r.stderr).toBe(0);
    const state = (run: string) => JSON.parse(readFileSync(join(run, 'checkpoint-00000060/trainer_state.json'), 'utf8')).best;
    expect(state(split)).toEqual(state(full));
    expect(state(full).sinceBest).toBeGreaterThan(0); // the count carried over is exercised
    expect(JSON.parse(readFileSync(join(split, 'run.json'), 'utf8')).best).toEqual(JSON.parse(readFileSync(join(full, 'run.json'), 'utf8')).best);
    expect(readFileSync(join(split, 'best/model.safetensors')).equals(readFileSync(join(full, 'best/model.safetensors')))).toBe(true);
  });

  it('--eval-hellaswag scores the items at each evaluation: at step 0 what float64 PyTorch gives, in the metrics and the loss curve', async () => {
    const ref = JSON.parse(readFileSync(join(ROOT, 'fixtures/hellaswag/reference.json'), 'utf8')) as { items: { pred: number; pred_norm: number; label: number }[] };
    const run = join(dir, 'hellaswag');
    const r = await gpt2(['finetune', data, '--model', join(ROOT, 'fixtures/gpt2-tiny'), '--backend', 'cpu', '--steps', '2', '--batch-size', '2', '--block-size', '32', '--sample-every', '0',
      '--eval-every', '2', '--eval-hellaswag', join(ROOT, 'fixtures/hellaswag/items.jsonl'), '--hellaswag-limit', '4', '--out', run]);
    expect(r.code, r.stderr).toBe(0);
    const hs = metrics(run).filter((m) => m.hellaswagAccNorm !== undefined);
    expect(hs.map((m) => m.step)).toEqual([0, 2]);
    const first4 = ref.items.slice(0, 4);
    expect([hs[0].hellaswagAcc, hs[0].hellaswagAccNorm]).toEqual([first4.filter((i) => i.pred === i.label).length / 4, first4.filter((i) => i.pred_norm === i.label).length / 4]);
    expect(readFileSync(join(run, 'loss.svg'), 'utf8')).toContain('HellaSwag acc_norm');
    const bad = await gpt2(['finetune', data, '--model', join(ROOT, 'fixtures/gpt2-tiny'), '--steps', '2', '--eval-hellaswag', join(dir, 'nope.jsonl'), '--out', join(dir, 'hellaswag-bad')]);
    expect([bad.code, bad.stderr]).toEqual([1, expect.stringMatching(/nope\.jsonl does not exist; give HellaSwag's \.jsonl file/)]);
    expect(existsSync(join(dir, 'hellaswag-bad'))).toBe(false);
  });

  it("token shards in llm.c's and nanoGPT's formats train exactly as the same tokens from text; --resume continues them; bad shards in one sentence", async () => {
    // the tokens training takes from the text (the document, then <|endoftext|>), written as shards
    const ids = [...JSON.parse((await gpt2(['tokenize', '--model', join(ROOT, 'fixtures/gpt2-tiny'), '--file', data, '--json'])).stdout).ids, 50256];
    const sd = join(dir, 'shards');
    mkdirSync(sd, { recursive: true });
    const llmc = (name: string, tokens: number[], header: number[] = [20240520, 1, tokens.length]) => {
      const h = new Int32Array(256);
      h.set(header);
      writeFileSync(join(sd, name), Buffer.concat([Buffer.from(h.buffer), Buffer.from(Uint16Array.from(tokens).buffer)]));
    };
    const cut = Math.floor(ids.length / 3);
    llmc('text_train_000001.bin', ids.slice(0, cut));
    llmc('text_train_000002.bin', ids.slice(cut));
    writeFileSync(join(sd, 'train.bin'), Buffer.from(Uint16Array.from(ids).buffer)); // nanoGPT's
    const flags = (run: string, extra: string[] = []) => ['--init', join(ROOT, 'fixtures/gpt2-tiny/config.json'), '--tokenizer', join(ROOT, 'fixtures/gpt2-tiny'), '--batch-size', '2', '--block-size', '32',
      '--steps', '6', '--eval-every', '3', '--save-every', '3', '--sample-every', '0', '--backend', 'cpu', '--out', join(dir, run), ...extra];
    for (const [run, d] of [['from-text', data], ['from-llmc', join(sd, 'text_train_*.bin')], ['from-nanogpt', join(sd, 'train.bin')]]) {
      const r = await gpt2(['train', d, ...flags(run)]);
      expect(r.code, r.stderr).toBe(0);
    }
    const valLosses = (run: string) => metrics(join(dir, run)).filter((m) => m.valLoss !== undefined).map((m) => m.valLoss);
    expect(losses(join(dir, 'from-llmc'))).toEqual(losses(join(dir, 'from-text')));
    expect(losses(join(dir, 'from-nanogpt'))).toEqual(losses(join(dir, 'from-text')));
    expect(valLosses('from-llmc')).toEqual(valLosses('from-text'));
    const resumed = await gpt2(['train', ...flags('from-llmc', ['--resume', join(dir, 'from-llmc/checkpoint-00000003')])]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(losses(join(dir, 'from-llmc'))).toEqual(losses(join(dir, 'from-text')));
    // validation from shards of its own
    llmc('text_val_000000.bin', ids.slice(0, 500));
    const withVal = await gpt2(['train', join(sd, 'text_train_*.bin'), ...flags('llmc-val', ['--val-data', join(sd, 'text_val_*.bin')])]);
    expect(withVal.stderr).toMatch(/data: 500 tokens in 1 llm\.c shard\(s\)/);
    expect(withVal.stderr).toMatch(/validation 500 tokens/);
    // what is wrong with a shard, naming it
    llmc('short.bin', ids.slice(0, 100), [20240520, 1, 200]);
    llmc('v2.bin', ids.slice(0, 100), [20240520, 2, 100]);
    llmc('wide.bin', [...ids.slice(0, 100), 60000]);
    writeFileSync(join(sd, 'odd.bin'), Buffer.alloc(101));
    for (const [file, pattern] of [
      ['short.bin', /short\.bin is an llm\.c token shard whose header promises 200 tokens \(1424 bytes\) but it holds 1224 bytes: it is truncated or corrupt/],
      ['v2.bin', /v2\.bin is an llm\.c token shard of version 2; only version 1/],
      ['wide.bin', /wide\.bin holds token id 60000 at position 100, past the model's vocabulary of 50257/],
      ['odd.bin', /odd\.bin has an odd number of bytes \(101\)/],
    ] as const) {
      const r = await gpt2(['train', join(sd, file), ...flags(`bad-${file}`)]);
      expect([r.code, r.stderr.trim()], file).toEqual([1, expect.stringMatching(new RegExp(`^error: .*${pattern.source}`, "m"))]);
      expect(existsSync(join(dir, `bad-${file}`, 'run.json')), file).toBe(false); // no run was begun
    }
    const tokenizerToo = await gpt2(['train', join(sd, 'train.bin'), '--init', join(ROOT, 'fixtures/gpt2-tiny/config.json'), '--train-tokenizer', '300', '--out', join(dir, 'bad-tok')]);
    expect(tokenizerToo.stderr).toMatch(/Token shards \(\.bin\) hold GPT-2 token ids already; --train-tokenizer trains a tokenizer on text/);
  });

  it("--data-order sequential (llm.c's pass): resumed exactly; resumed in the other order, one sentence; the MFU on cpu", async () => {
    const run = join(dir, 'sequential'), extra = ['--steps', '6', '--save-every', '3', '--data-order', 'sequential', '--backend', 'cpu'];
    const r = await gpt2(args(run, extra));
    expect(r.code, r.stderr).toBe(0);
    // the cpu backend measures its peak: the progress line and the metrics carry the MFU
    expect(r.stderr).toMatch(/tok\/s \| MFU \d+\.\d% \| ETA/);
    const mfu = metrics(run).filter((m) => m.loss !== undefined).map((m) => m.mfu);
    expect(mfu.every((x) => x > 0 && x < 1), `${mfu}`).toBe(true);
    const whole = losses(run);
    expect(JSON.parse(readFileSync(join(run, 'checkpoint-00000003/trainer_state.json'), 'utf8')).order).toEqual({ epoch: 0, next: 12 }); // 3 steps of 4 windows
    // --data-order comes from run.json when not given, as the other settings do
    const again = await gpt2(args(run, ['--steps', '6', '--resume', join(run, 'checkpoint-00000003')]));
    expect(again.code, again.stderr).toBe(0);
    expect(losses(run)).toEqual(whole);
    const other = await gpt2(args(run, ['--steps', '6', '--data-order', 'random', '--resume', join(run, 'checkpoint-00000003')]));
    expect([other.code, other.stderr]).toEqual([1, expect.stringMatching(/The checkpoint drew its data in the sequential order; resume with --data-order sequential/)]);
  });

  it('--early-stop and --final best without validation end in one sentence', async () => {
    for (const [extra, pattern] of [
      [['--early-stop', '3', '--val-split', '0'], /^error: --early-stop counts evaluations without improvement, but there is no validation data \(--val-split 0 and no --val-data\); hold out data with --val-split or --val-data and evaluate with --eval-every\.\n$/],
      [['--final', 'best', '--eval-every', '0'], /^error: --final best keeps the checkpoint with the lowest validation loss, but --eval-every is 0; hold out data with --val-split or --val-data, or use --final last\.\n$/],
    ] as const) {
      const run = join(dir, 'novalidation');
      const r = await gpt2(args(run, ['--steps', '5', ...extra]));
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(pattern);
      expect(existsSync(join(run, 'run.json'))).toBe(false);
    }
  });
});
