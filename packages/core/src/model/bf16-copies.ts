// The bf16 copies of the weight matrices, for a backend whose GEMMs take their operands as 'bf16'
// copies (Backend.bf16Copies: the cpu backend under --precision bf16). Each matrix is rounded once
// when its weights change, not by every product that reads it: AdamW's pass writes the copy of what
// it updates, and whatever else writes weights (loading a tensor, a broadcast or gather across
// ranks) refreshes the copies of what it wrote. The copies share the fp32 tensors' layout, so a
// layer's view, or any range of a tensor, sits at the same offsets in both.
import type { Backend, Buf } from '../backend.js';
import type { GPT2Config } from './config.js';
import { slices, type ParamLayout, type ParamName } from './params.js';
import { TensorBuffers } from './tensor-buffers.js';

/** The matrices the GEMMs read: the linear layers' weights and the tied LM head (wte). */
export const COPIED = ['wte', 'qkvw', 'attprojw', 'fcw', 'fcprojw'] as const satisfies readonly ParamName[];
export type Copied = (typeof COPIED)[number];

export const isCopied = (name: ParamName): name is Copied => (COPIED as readonly string[]).includes(name);

export class Bf16Copies {
  readonly bufs: TensorBuffers;
  /** layers.qkvw[l]: the copy of layer l's (3C, C) weight, as GPT2.layers views the fp32 one. */
  readonly layers = {} as Record<Copied, Buf[]>;

  constructor(private readonly be: Backend, config: GPT2Config, private readonly layout: Record<ParamName, ParamLayout>) {
    const mine: Partial<Record<ParamName, ParamLayout>> = {};
    for (const n of COPIED) mine[n] = layout[n];
    this.bufs = new TensorBuffers(be, mine, 0, 'bf16');
    for (const n of COPIED) this.layers[n] = slices(config, layout[n]).map((o) => be.view(this.bufs.bufs[n], o - layout[n].offset, layout[n].perLayer));
  }

  /** The whole copy of a tensor (AdamW's output), or null for a tensor no GEMM reads. */
  of(name: ParamName): Buf | null {
    return isCopied(name) ? this.bufs.bufs[name] : null;
  }

  /** Rounds elements [start, start + count) of a tensor's fp32 buffer `params` into its copy. */
  refresh(name: ParamName, params: Buf, start = 0, count = this.layout[name].size): void {
    if (!isCopied(name) || count <= 0) return;
    this.be.kernels.roundBf16!(this.be.view(this.bufs.bufs[name], start, count), this.be.view(params, start, count), count);
  }

  free(): void {
    this.bufs.free();
  }
}
