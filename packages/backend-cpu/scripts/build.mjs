// Builds the cpu addon (build/gpt2_cpu.node) with the system C++ compiler (g++ or clang++, or $CXX):
// C++17 with OpenMP, for this machine's vector units (-march=native) unless GPT2_CPU_MARCH names a
// portable baseline (x86-64-v3, say, for a release that runs elsewhere). No BLAS is needed to build:
// it is loaded at run time. Without a compiler (or with one that fails) it prints one line, writes
// the reason to build/not-built.txt and succeeds: the backend then reports itself unavailable.
// `--out DIR --march ARCH --portable` builds elsewhere for other machines (the release does): libstdc++
// linked in, and the OpenMP runtime looked up beside the addon first ($ORIGIN).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined);
const build = arg('--out') ?? join(root, 'build');
mkdirSync(build, { recursive: true });
rmSync(join(build, 'not-built.txt'), { force: true });

function notBuilt(reason) {
  console.log(`backend-cpu: not built: ${reason}`);
  writeFileSync(join(build, 'not-built.txt'), reason);
  process.exit(0);
}

const cxx = [process.env.CXX, 'g++', 'clang++', 'c++'].filter(Boolean).find((c) => spawnSync(c, ['--version']).status === 0);
if (!cxx) notBuilt('no C++ compiler was found when `pnpm build` ran (install g++: apt-get install g++), then rebuild');
const nodeInclude = [process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'), join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node']
  .filter(Boolean)
  .find((d) => existsSync(join(d, 'node_api.h')));
if (!nodeInclude) notBuilt("Node's headers (node_api.h) were not found; install them (Debian: libnode-dev) or set npm_config_nodedir, then rebuild");

const march = arg('--march') ?? (process.env.GPT2_CPU_MARCH || 'native');
const flags = ['-O3', '-std=c++17', '-fPIC', '-fopenmp', '-fno-math-errno', `-march=${march}`, `-DGPT2_MARCH="${march}"`, '-DNODE_GYP_MODULE_NAME=gpt2_cpu', `-I${nodeInclude}`];
const sources = readdirSync(join(root, 'native')).filter((f) => f.endsWith('.cc'));

function run(args) {
  return new Promise((resolve) => {
    const p = spawn(cxx, args, { stdio: ['ignore', 'inherit', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => resolve(code === 0 ? '' : err.trim() || `${cxx} exited with ${code}`));
  });
}

// compile the sources in parallel, then link
const queue = [...sources], errors = [];
await Promise.all(Array.from({ length: Math.min(availableParallelism(), sources.length) }, async () => {
  for (let f; (f = queue.shift()); ) {
    const e = await run([...flags, '-c', join(root, 'native', f), '-o', join(build, f.replace(/\.cc$/, '.o'))]);
    if (e) errors.push(`${f}: ${e}`);
  }
}));
if (errors.length) notBuilt(`${cxx} failed: ${errors.join('\n')}`);
const portable = process.argv.includes('--portable') ? ['-static-libstdc++', '-static-libgcc', "-Wl,-rpath,$ORIGIN"] : [];
const link = await run(['-shared', '-fopenmp', ...portable, '-o', join(build, 'gpt2_cpu.node'), ...sources.map((f) => join(build, f.replace(/\.cc$/, '.o'))), '-ldl', ...(process.platform === 'linux' ? ['-lmvec'] : [])]);
if (link) notBuilt(`${cxx} failed to link: ${link}`);
console.log(`backend-cpu: built ${join(build, 'gpt2_cpu.node')} with ${cxx} -march=${march}`);
