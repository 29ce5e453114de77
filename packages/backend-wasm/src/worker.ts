// A kernel worker: instantiates the kernels over the shared memory, then runs its share of each
// job the main thread posts in the control block (Atomics.wait / notify). Node worker_threads and
// browser Web Workers alike.
import { CTRL_INTS, DONE, GRAIN, KERNEL, KERNEL_NAMES, MAX_ARGS, NARGS, SEQ, STOP, UNITS, share, type KernelFn } from './kernels-abi.js';

interface Init {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  ctrl: SharedArrayBuffer;
  tid: number;
  threads: number;
}

const SPIN = 20_000;

async function run(init: Init, ready: () => void): Promise<void> {
  const inst = await WebAssembly.instantiate(init.module, { env: { memory: init.memory, abort: () => { throw new Error('wasm abort'); } } });
  const fns = KERNEL_NAMES.map((n) => inst.exports[n] as KernelFn);
  const ints = new Int32Array(init.ctrl, 0, CTRL_INTS);
  const args = new Float64Array(init.ctrl, CTRL_INTS * 4, MAX_ARGS);
  const results = new Float64Array(init.ctrl, CTRL_INTS * 4 + MAX_ARGS * 8);
  let seen = Atomics.load(ints, SEQ);
  ready();
  for (;;) {
    // spin a little before sleeping: decoding posts a job every few tens of microseconds, and waking
    // a sleeping thread costs about as much (as OpenMP's GOMP_SPINCOUNT)
    for (let i = 0; i < SPIN && Atomics.load(ints, SEQ) === seen; i++);
    Atomics.wait(ints, SEQ, seen);
    seen = Atomics.load(ints, SEQ);
    if (Atomics.load(ints, STOP)) return;
    const [s, e] = share(ints[UNITS], ints[GRAIN], init.threads, init.tid);
    let r = 0;
    if (s < e) r = fns[ints[KERNEL]](...Array.from(args.subarray(0, ints[NARGS])), s, e, init.tid);
    results[init.tid] = r;
    Atomics.add(ints, DONE, 1);
    Atomics.notify(ints, DONE);
  }
}

const isNode = typeof process !== 'undefined' && Boolean(process.versions?.node);
if (isNode) {
  const { parentPort, workerData } = await import('node:worker_threads');
  void run(workerData as Init, () => parentPort!.postMessage('ready'));
} else {
  const scope = self as unknown as { onmessage: ((e: MessageEvent) => void) | null; postMessage(m: unknown): void };
  scope.onmessage = (e: MessageEvent) => void run(e.data as Init, () => scope.postMessage('ready'));
}
