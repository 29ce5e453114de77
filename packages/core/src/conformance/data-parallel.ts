// Data-parallel training against the float64 fixture (gpt2-odd's 10 clipped AdamW steps on one batch
// of B=3): each rank of a job trains on its rows of that batch, and the global loss, gradients, norms
// and final weights must be the single-process reference's at the tolerances of the backend's
// precision (a bf16 backend's copies of the weights then go through the broadcast and ZeRO-1's
// gather too). Ranks other than 0 start from other weights, so the broadcast is tested too. Run
// under mpirun by the cli's mpi.test.ts.
import type { Backend } from '../backend.js';
import { GPT2 } from '../model/gpt2.js';
import { shardRange, type Collective } from '../train/collective.js';
import { DataParallel, type DataParallelOptions } from '../train/data-parallel.js';
import { TOLERANCES, type Precision } from '../precision.js';
import { assertClose } from './compare.js';
import { compareTensors, loadFixture } from './fixtures.js';

export async function dataParallelAdamW(be: Backend, comm: Collective, opts: DataParallelOptions = {}, p: Precision = 'fp32'): Promise<void> {
  const f = loadFixture('gpt2-odd'), TOL = TOLERANCES[p];
  const h = JSON.parse(f.ref.metadata.adamw) as { lr: number; betas: [number, number]; eps: number; weight_decay: number; steps: number };
  const inputs = f.ref.int32('inputs'), targets = f.ref.int32('targets');
  const [B, T] = f.ref.tensors.get('inputs')!.shape;
  if (comm.size > B) throw new Error(`the fixture's batch of ${B} rows cannot be split across ${comm.size} ranks`);
  const m = new GPT2(be, f.config, comm.rank === 0 ? f.params : GPT2.initParams(f.config, comm.rank));
  const dp = await DataParallel.create(comm, m, opts);
  await dp.broadcastWeights();
  // this rank's rows; its mean loss weighted by its share of the rows, so the sum across ranks is the batch mean
  const { start, count } = shardRange(B, comm.rank, comm.size);
  const rows = (a: Int32Array) => a.subarray(start * T, (start + count) * T);
  const wantLoss = f.ref.float32('adamw.losses'), wantNorm = f.ref.float32('adamw.grad_norms');
  for (let i = 0; i < h.steps; i++) {
    m.zeroGrad();
    dp.beginStep(i + 1);
    const l = await m.forwardBackward(rows(inputs), count, T, rows(targets), count / B, dp.ready);
    await dp.finish();
    const [loss] = await dp.sum([(l * count) / B], `fixture step ${i}'s loss`);
    assertClose(`${f.name} data-parallel loss before step ${i} (rank ${comm.rank} of ${comm.size})`, [loss], [wantLoss[i]], TOL.adamLoss);
    if (i === 0 && !opts.zero) compareTensors(`${f.name} summed grad (rank ${comm.rank})`, f.config, await m.readGrads(), f.ref, 'grads.', TOL.grad);
    const norm = await dp.gradNorm();
    assertClose(`${f.name} data-parallel grad norm at step ${i}`, [norm], [wantNorm[i]], TOL.grad[0], TOL.grad[1]);
    await dp.update({ lr: h.lr, beta1: h.betas[0], beta2: h.betas[1], eps: h.eps, weightDecay: h.weight_decay, clip: 1.0 }, norm);
  }
  compareTensors(`${f.name} params after data-parallel AdamW (rank ${comm.rank})`, f.config, await m.readParams(), f.ref, 'adamw.params.', TOL.param);
  await dp.checkSameWeights(h.steps);
  // the moments as a checkpoint saves them: gathered whole on rank 0 under ZeRO-1
  const saved: Float32Array[] = [];
  for await (const c of m.optimizerChunks('m')) saved.push(c);
  if (comm.rank === 0 && saved.reduce((n, c) => n + c.length, 0) !== m.optimizerLength) throw new Error(`the saved moment holds ${saved.reduce((n, c) => n + c.length, 0)} values, not ${m.optimizerLength}`);
  m.dispose();
  dp.zero?.dispose();
}
