// The whole conformance suite on the built backend (dist, so the worker script and .wasm files
// are the ones users get): plain SIMD and relaxed SIMD, multi-threaded and single-threaded.
import { runConformance } from '@gpt2/core/conformance';
import { createWasmBackend } from '../dist/index.js';

const relaxedOk = await (async () => {
  try {
    const b = await createWasmBackend({ variant: 'relaxed', threads: 1 });
    b.dispose();
    return true;
  } catch {
    return false;
  }
})();

runConformance('wasm simd, 2 threads', () => createWasmBackend({ variant: 'simd', threads: 2 }));
runConformance('wasm simd, 1 thread', () => createWasmBackend({ variant: 'simd', threads: 1 }));
runConformance('wasm relaxed simd, 2 threads', () => createWasmBackend({ variant: 'relaxed', threads: 2 }), {
  skip: relaxedOk ? undefined : 'this engine does not validate relaxed SIMD',
});
