// Messages between the page and the model worker.
import type { GenerateOptions } from '@gpt2/core';

/** webgpu-f16: WebGPU with --precision f16 (weights read as halves). */
export type BackendChoice = 'auto' | 'webgpu' | 'webgpu-f16' | 'wasm';

export interface ModelFiles {
  config: ArrayBuffer;
  model: ArrayBuffer;
  vocab: ArrayBuffer;
  merges: ArrayBuffer;
}

export type ToWorker =
  | { type: 'load'; files: ModelFiles; backend: BackendChoice }
  | { type: 'generate'; prompt: string; options: Omit<GenerateOptions, 'onWarning'> }
  | { type: 'finetune'; text: string; steps: number; batchSize: number; blockSize: number; lr: number; sampleEvery: number }
  | { type: 'stop' }
  | { type: 'export' };

export type FromWorker =
  | { type: 'backend'; name: string; why: string; details: Record<string, string> }
  | { type: 'loaded'; params: number; vocab: number; context: number; layers: number }
  | { type: 'text'; sample: number; text: string; done: boolean; tokens?: number[] }
  | { type: 'generated'; tokensPerSecond: number; stopped: boolean }
  | { type: 'loss'; step: number; loss: number; tokensPerSecond: number }
  | { type: 'sample'; step: number; text: string }
  | { type: 'trained'; steps: number; stopped: boolean }
  | { type: 'exported'; zip: ArrayBuffer }
  | { type: 'warning'; message: string }
  | { type: 'error'; message: string };
