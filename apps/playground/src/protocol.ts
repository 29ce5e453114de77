// Messages between the page and the model worker.
import type { GenerateOptions, LoraTarget, WeightFormat } from '@gpt2/core';

/** webgpu-f16: WebGPU with --precision f16 (weights read as halves). */
/** 'hf': safetensors and vocab files (transformers, gpt2.ts); 'transformers.js': the ONNX folder transformers.js loads */
export type ExportFormat = 'hf' | 'transformers.js' | 'adapter';

export type BackendChoice = 'auto' | 'webgpu' | 'webgpu-f16' | 'wasm';

export interface ModelFiles {
  config: ArrayBuffer;
  model: ArrayBuffer;
  vocab: ArrayBuffer;
  merges: ArrayBuffer;
}

export type ToWorker =
  | { type: 'load'; files: ModelFiles; backend: BackendChoice; weights: WeightFormat }
  | { type: 'generate'; prompt: string; options: Omit<GenerateOptions, 'onWarning'> }
  | { type: 'finetune'; text: string; steps: number; batchSize: number; blockSize: number; lr: number; sampleEvery: number; valSplit: number; evalEvery: number; lora?: { r: number; targets: LoraTarget[] } }
  | { type: 'stop' }
  | { type: 'export'; format: ExportFormat };

export type FromWorker =
  | { type: 'backend'; name: string; why: string; details: Record<string, string> }
  | { type: 'loaded'; params: number; vocab: number; context: number; layers: number; weights: WeightFormat }
  /** The model the next training runs on: LoRA adapters on frozen weights (how many trained), or all weights. */
  | { type: 'adapters'; trained: number; total: number; r: number | null }
  | { type: 'text'; sample: number; text: string; done: boolean; tokens?: number[] }
  | { type: 'generated'; tokensPerSecond: number; stopped: boolean }
  | { type: 'loss'; step: number; loss: number; tokensPerSecond: number }
  | { type: 'sample'; step: number; text: string }
  | { type: 'eval'; step: number; loss: number; accuracy: number }
  | { type: 'trained'; steps: number; stopped: boolean; lora: boolean }
  | { type: 'exported'; format: ExportFormat; zip: ArrayBuffer }
  | { type: 'warning'; message: string }
  | { type: 'error'; message: string };
