// The exported kernel functions, in a fixed order shared by the main thread and the workers.
export const KERNEL_NAMES = [
  'matmul_forward', 'matmul_backward_input', 'matmul_backward_weight', 'matmul_int8_forward',
  'attention_forward', 'attention_backward', 'attention_decode',
  'encoder_forward', 'encoder_backward', 'layernorm_forward', 'layernorm_backward_input', 'layernorm_backward_params',
  'gelu_forward', 'gelu_backward', 'add', 'scaled_dropout', 'cross_entropy_forward', 'cross_entropy_backward', 'sum_squares', 'adamw',
] as const;

export type KernelName = (typeof KERNEL_NAMES)[number];
export type KernelFn = (...args: number[]) => number;

// Control block layout (Int32 slots, then Float64 args and per-thread results)
export const SEQ = 0; // job sequence number, bumped by the main thread
export const DONE = 1; // workers finished with the current job
export const KERNEL = 2; // index into KERNEL_NAMES
export const NARGS = 3; // kernel args before the range
export const UNITS = 4; // work units to split
export const GRAIN = 5; // split granularity (ranges are multiples of it)
export const STOP = 6; // 1 = workers exit
export const MAX_ARGS = 24;
export const MAX_THREADS = 64;
export const CTRL_INTS = 8;
export const CTRL_BYTES = CTRL_INTS * 4 + MAX_ARGS * 8 + MAX_THREADS * 8;

/** Thread t's share [s, e) of `units`, in multiples of `grain`. */
export function share(units: number, grain: number, threads: number, t: number): [number, number] {
  const chunks = Math.ceil(units / grain);
  const per = Math.ceil(chunks / threads);
  const s = Math.min(units, t * per * grain), e = Math.min(units, (t + 1) * per * grain);
  return [s, e];
}
