// Builds the CUDA addon (build/gpt2_cuda.node) with nvcc when a CUDA toolkit is found (nvcc on
// PATH or in $CUDA_HOME/bin), for sm_80, sm_86, sm_89 and sm_90 plus PTX for newer cards.
// Without one it prints one line and succeeds: the backend then reports itself unavailable.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const candidates = [process.env.CUDA_HOME && join(process.env.CUDA_HOME, 'bin', 'nvcc'), 'nvcc'].filter(Boolean);
const nvcc = candidates.find((c) => spawnSync(c, ['--version']).status === 0);
if (!nvcc) {
  console.log('backend-cuda: skipped (no CUDA toolkit: nvcc is not on PATH and CUDA_HOME is unset)');
  process.exit(0);
}
const nodeInclude = [process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'), join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node']
  .filter(Boolean)
  .find((d) => existsSync(join(d, 'node_api.h')));
if (!nodeInclude) {
  console.error('backend-cuda: cannot find node_api.h (Node headers); install them (Debian: nodejs dev headers) or set npm_config_nodedir.');
  process.exit(1);
}
mkdirSync(join(root, 'build'), { recursive: true });
const archs = ['80', '86', '89', '90'].flatMap((a) => ['-gencode', `arch=compute_${a},code=sm_${a}`]);
const args = [
  '-O3', '-std=c++17', '-shared', '-Xcompiler', '-fPIC', '-cudart', 'static', '-DNODE_GYP_MODULE_NAME=gpt2_cuda',
  `-I${nodeInclude}`, ...archs, '-gencode', 'arch=compute_90,code=compute_90',
  '-o', join(root, 'build', 'gpt2_cuda.node'), join(root, 'native', 'addon.cu'), join(root, 'native', 'kernels.cu'), '-ldl',
];
console.log(`backend-cuda: ${nvcc} ${args.join(' ')}`);
execFileSync(nvcc, args, { stdio: 'inherit' });
