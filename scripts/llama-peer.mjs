#!/usr/bin/env node
// gpt2.ts beside llama.cpp on this machine, in one run, on the same weights: a random GPT-2 124M
// written as a model folder, exported to GGUF (F32 and Q8_0) by `gpt2 export --format gguf`, then
// decoding at batch 1 (fp32 / F32 and int8 / Q8_0), prefill of 512 tokens, a server under 16
// streaming clients (`gpt2 serve --slots 16` against `llama-server -np 16`, the same clients from
// `gpt2 bench --task serve`), and the loss each computes on the same text (llama-perplexity's
// scheme: chunks of --ctx tokens, the second half of each scored). Not run by CI; it builds
// nothing: give it the bin folder of a llama.cpp you built (cmake -B build -DGGML_NATIVE=ON
// -DLLAMA_CURL=OFF && cmake --build build -j; measured with b4748), after `pnpm build`.
//   node scripts/llama-peer.mjs --llama ~/llama.cpp/build/bin [--threads 2] [--out /tmp/llama-peer] [--json]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const arg = (name, dflt) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : dflt);
const llama = arg('--llama'), threads = arg('--threads', '2'), out = arg('--out', '/tmp/llama-peer'), ctx = Number(arg('--ctx', '128'));
if (!llama || !existsSync(join(llama, 'llama-bench'))) {
  console.error('usage: node scripts/llama-peer.mjs --llama DIR (holding llama-bench, llama-server, llama-perplexity) [--threads N] [--out DIR] [--json]');
  process.exit(2);
}
const root = fileURLToPath(new URL('..', import.meta.url)), bin = join(root, 'packages/cli/dist/bin.js');
const gpt2 = (...a) => execFileSync(process.execPath, [bin, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
const log = (s) => process.stderr.write(`${s}\n`);
mkdirSync(out, { recursive: true });

// the weights, in both formats
const model = join(out, 'gpt2-random'), f32 = join(out, 'f32.gguf'), q8 = join(out, 'q8_0.gguf');
if (!existsSync(join(model, 'config.json'))) execFileSync(process.execPath, [join(root, 'scripts/random-model.mjs'), 'gpt2', model], { stdio: 'ignore' });
gpt2('export', '--model', model, '--format', 'gguf', '--out', f32, '--force');
gpt2('export', '--model', model, '--format', 'gguf', '--quantize', 'q8_0', '--out', q8, '--force');

// decoding and prefill
log('llama-bench ...');
const lb = JSON.parse(execFileSync(join(llama, 'llama-bench'), ['-m', `${f32},${q8}`, '-t', threads, '-p', '512', '-n', '128', '-o', 'json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
const llamaTs = (file, prompt) => lb.find((r) => r.model_filename.endsWith(file) && (prompt ? r.n_prompt > 0 : r.n_gen > 0)).avg_ts;
log('gpt2 bench --task generate ...');
const ours = (extra) => JSON.parse(gpt2('bench', '--task', 'generate', '--model', model, '--backend', 'cpu', '--threads', threads, '--json', ...extra));
const decode = { fp32: ours(['--batch', '1', '--prompt-tokens', '32', '--new-tokens', '128']), int8: ours(['--batch', '1', '--prompt-tokens', '32', '--new-tokens', '128', '--quantize', 'int8']) };
const prefill = { fp32: ours(['--batch', '1', '--prompt-tokens', '512', '--new-tokens', '1']), int8: ours(['--batch', '1', '--prompt-tokens', '512', '--new-tokens', '1', '--quantize', 'int8']) };

// serving: 16 clients x 3 requests x 64 tokens after a 32-token prompt
const serveArgs = ['--task', 'serve', '--model', model, '--concurrency', '16', '--requests', '48', '--prompt-tokens', '32', '--new-tokens', '64', '--json'];
async function llamaServer(file) {
  const port = 18000 + Math.floor(Math.random() * 2000);
  const child = spawn(join(llama, 'llama-server'), ['-m', file, '-np', '16', '-c', String(16 * 128), '-t', threads, '--port', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; !(await fetch(`${url}/health`).then((r) => r.ok, () => false)); i++) {
    if (i > 300 || child.exitCode !== null) throw new Error(`llama-server did not come up on ${url}: ${err.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  try {
    return JSON.parse(gpt2('bench', ...serveArgs, '--url', url)).runs[0];
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}
log('serving ...');
const serve = {
  llamaF32: await llamaServer(f32), llamaQ8: await llamaServer(q8),
  fp32: JSON.parse(gpt2('bench', ...serveArgs, '--backend', 'cpu', '--threads', threads, '--slots', '16')).runs[0],
  int8: JSON.parse(gpt2('bench', ...serveArgs, '--backend', 'cpu', '--threads', threads, '--slots', '16', '--quantize', 'int8')).runs[0],
};

// the loss on the same text, llama-perplexity's scheme on both sides
log('loss ...');
const text = join(out, 'text.txt');
writeFileSync(text, readFileSync(join(root, 'examples/shakespeare.txt'), 'utf8').slice(-20000));
const ppl = (file) => {
  const r = spawnSync(join(llama, 'llama-perplexity'), ['-m', file, '-f', text, '-c', String(ctx), '-b', String(ctx), '-t', threads], { encoding: 'utf8' });
  return Number(/Final estimate: PPL = ([\d.]+)/.exec(r.stdout + r.stderr)[1]); // it prints the estimate on stderr
};
const { GPT2 } = await import('../packages/core/dist/index.js');
const { loadModelDir, loadTokenizerDir } = await import('../packages/core/dist/node.js');
const { createCpuBackend } = await import('../packages/backend-cpu/dist/index.js');
async function ourPpl(weights) {
  const { config, params } = await loadModelDir(model), tok = await loadTokenizerDir(model), be = await createCpuBackend({ threads: Number(threads) });
  const m = new GPT2(be, config, params, { weights }), ids = tok.encode(readFileSync(text, 'utf8')), V = config.vocabSize;
  let nll = 0, count = 0;
  for (let c = 0; c + ctx <= ids.length; c += ctx) {
    const x = Int32Array.from(ids.subarray(c, c + ctx));
    await m.forward(x, 1, ctx);
    const logits = await m.logits();
    for (let j = ctx / 2; j < ctx - 1; j++) {
      const row = logits.subarray(j * V, (j + 1) * V);
      let max = -Infinity, sum = 0;
      for (const v of row) max = v > max ? v : max;
      for (const v of row) sum += Math.exp(v - max);
      nll -= row[x[j + 1]] - max - Math.log(sum);
      count++;
    }
  }
  m.dispose();
  return Math.exp(nll / count);
}
const loss = { llamaF32: ppl(f32), llamaQ8: ppl(q8), fp32: await ourPpl('fp32'), int8: await ourPpl('int8') };

const r1 = (x) => Math.round(x * 10) / 10, ratio = (a, b) => `${(a / b).toFixed(2)}x`;
const rows = [
  ['decode batch 1, fp32 / F32 (tokens/s)', decode.fp32.tokensPerSecond, llamaTs('f32.gguf', false)],
  ['decode batch 1, int8 / Q8_0', decode.int8.tokensPerSecond, llamaTs('q8_0.gguf', false)],
  ['prefill 512, fp32 / F32 (tokens/s)', 512000 / prefill.fp32.prefillMs, llamaTs('f32.gguf', true)],
  ['prefill 512, int8 / Q8_0', 512000 / prefill.int8.prefillMs, llamaTs('q8_0.gguf', true)],
  ['serve 16 clients, fp32 / F32 (output tokens/s)', serve.fp32.outputTokensPerSecond, serve.llamaF32.outputTokensPerSecond],
  ['serve 16 clients, int8 / Q8_0', serve.int8.outputTokensPerSecond, serve.llamaQ8.outputTokensPerSecond],
  [`perplexity on ${ctx}-token chunks, fp32 / F32 (lower is better)`, loss.fp32, loss.llamaF32],
  ['perplexity, int8 / Q8_0', loss.int8, loss.llamaQ8],
];
const result = {
  threads: Number(threads), bandwidth: { readGBps: decode.fp32.readGBps, fp32WeightMB: decode.fp32.weightMBPerStep, int8WeightMB: decode.int8.weightMBPerStep },
  fractionOfBound: { fp32: decode.fp32.fractionOfBound, int8: decode.int8.fractionOfBound }, rows: rows.map(([task, ours, peer]) => ({ task, gpt2ts: r1(ours), llamaCpp: r1(peer) })),
  serve, int8OverFp32Serving: r1(serve.int8.outputTokensPerSecond / serve.fp32.outputTokensPerSecond),
};
if (process.argv.includes('--json')) console.log(JSON.stringify(result, null, 2));
else {
  console.log('| task | gpt2.ts | llama.cpp | ratio |\n|---|---|---|---|');
  for (const [task, a, b] of rows) console.log(`| ${task} | ${r1(a)} | ${r1(b)} | ${ratio(a, b)} |`);
  console.log(`\nread bandwidth ${decode.fp32.readGBps} GB/s; fraction of the decoding bound: fp32 ${decode.fp32.fractionOfBound}, int8 ${decode.int8.fractionOfBound}; int8 serving / fp32 serving ${result.int8OverFp32Serving}x`);
}
