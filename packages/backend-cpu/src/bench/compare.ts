// pnpm --filter @gpt2/backend-cpu bench:compare — `gpt2 bench` on the cpu, wasm and reference
// backends one after another in one run (each in its own process, so peak RSS is its own): a
// 124M training step at B=4, T=64 and decoding at batch 1 and 8 (32-token prompt, 128 new
// tokens). GPT2_BENCH_BACKENDS and GPT2_BENCH_CASES pick a subset. One JSON array.
// A backend is NAME[/GEMM][:PRECISION]: cpu/blas is the cpu backend with its products through the
// BLAS (GPT2_CPU_GEMM=blas), cpu/onednn through oneDNN, cpu:bf16 in bf16. `onnxruntime` (decoding
// only) is ONNX Runtime, transformers.js's engine, running our ONNX export of the same model.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../../cli/dist/bin.js', import.meta.url));
const CASES: Record<string, string[]> = {
  train: ['--task', 'train', '--init', 'gpt2', '--batch', '4', '--seq', '64', '--steps', '3'],
  'generate-1': ['--task', 'generate', '--init', 'gpt2', '--batch', '1', '--prompt-tokens', '32', '--new-tokens', '128'],
  'generate-8': ['--task', 'generate', '--init', 'gpt2', '--batch', '8', '--prompt-tokens', '32', '--new-tokens', '128'],
  'train-4x1024': ['--task', 'train', '--init', 'gpt2', '--batch', '4', '--seq', '1024', '--steps', '2'],
  'train-medium-1x1024': ['--task', 'train', '--init', 'gpt2-medium', '--batch', '1', '--seq', '1024', '--steps', '2'],
  matmul: ['--task', 'matmul', '--batch', '4', '--seq', '64'],
  'matmul-4x1024': ['--task', 'matmul', '--batch', '4', '--seq', '1024'],
};
const backends = (process.env.GPT2_BENCH_BACKENDS ?? 'cpu/blas,cpu/onednn,cpu:bf16,wasm,onnxruntime').split(',');
const cases = (process.env.GPT2_BENCH_CASES ?? 'train,generate-1,generate-8').split(',');
const rows: object[] = [];
for (const c of cases) {
  for (const spec of backends) {
    const [, backend, gemm, precision] = /^([a-z]+)(?:\/([a-z]+))?(?::([a-z0-9]+))?$/.exec(spec) ?? [spec, spec];
    if (backend === 'onnxruntime' && !c.startsWith('generate')) continue;
    // the reference backend takes minutes a step at 124M: one step
    const args = backend === 'reference' ? CASES[c].map((a, i, all) => (all[i - 1] === '--steps' ? '1' : a)) : CASES[c];
    const env = { ...process.env, ...(gemm ? { GPT2_CPU_GEMM: gemm } : {}) };
    try {
      const out = execFileSync(process.execPath, [bin, 'bench', '--backend', backend, ...(precision ? ['--precision', precision] : []), ...args, '--json'], { encoding: 'utf8', env });
      rows.push({ case: c, ...(gemm ? { gemm } : {}), ...JSON.parse(out) });
    } catch (err) {
      rows.push({ case: c, backend: spec, error: ((err as { stderr?: string }).stderr ?? String(err)).trim().split('\n')[0] });
    }
    console.error(JSON.stringify(rows[rows.length - 1]));
  }
}
console.log(JSON.stringify(rows, null, 2));
