// Builds build/gpt2_mpi.node with the system C++ compiler. No MPI is needed to build: libmpi is
// loaded at run time, and only by processes mpirun starts. Without a compiler it prints one line,
// writes the reason to build/mpi-not-built.txt and succeeds: training under mpirun then says so.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : join(root, 'build');
mkdirSync(out, { recursive: true });
rmSync(join(out, 'mpi-not-built.txt'), { force: true });
function notBuilt(reason) {
  console.log(`mpi: not built: ${reason}`);
  writeFileSync(join(out, 'mpi-not-built.txt'), reason);
  process.exit(0);
}
const cxx = [process.env.CXX, 'g++', 'clang++', 'c++'].filter(Boolean).find((c) => spawnSync(c, ['--version']).status === 0);
if (!cxx) notBuilt('no C++ compiler was found when `pnpm build` ran (install g++: apt-get install g++), then rebuild');
const nodeInclude = [process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'), join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node']
  .filter(Boolean)
  .find((d) => existsSync(join(d, 'node_api.h')));
if (!nodeInclude) notBuilt("Node's headers (node_api.h) were not found; install them (Debian: libnode-dev) or set npm_config_nodedir, then rebuild");
const portable = process.argv.includes('--portable') ? ['-static-libstdc++', '-static-libgcc'] : [];
const r = spawnSync(cxx, ['-O2', '-std=c++17', '-fPIC', '-shared', '-pthread', '-DNODE_GYP_MODULE_NAME=gpt2_mpi', `-I${nodeInclude}`, ...portable,
  join(root, 'native', 'addon.cc'), join(root, 'native', 'libmpi.cc'), '-o', join(out, 'gpt2_mpi.node'), '-ldl'], { encoding: 'utf8' });
if (r.status !== 0) notBuilt(`${cxx} failed: ${(r.stderr || '').trim()}`);
console.log(`mpi: built ${join(out, 'gpt2_mpi.node')} with ${cxx}`);
