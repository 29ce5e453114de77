import { defineConfig } from 'vite';

// Cross-origin isolation (COOP/COEP) makes SharedArrayBuffer available, so the WebAssembly
// backend runs multi-threaded. Node-only modules of the backends are never reached in a browser.
const isolation = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

export default defineConfig({
  server: { headers: isolation, host: '127.0.0.1' },
  preview: { headers: isolation, host: '127.0.0.1', port: 5173 },
  worker: { format: 'es' },
  optimizeDeps: { exclude: ['@gpt2/backend-wasm', '@gpt2/backend-webgpu', '@gpt2/core'] },
  build: {
    target: 'es2022',
    rollupOptions: { external: ['webgpu', /^node:/] },
  },
});
