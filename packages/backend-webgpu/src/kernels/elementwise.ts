// GELU (GPT-2's tanh approximation): the function, which the MLP's matmul applies in its
// epilogue (matmul.ts) and geluForward alone (after a LoRA-adapted c_fc), and its backward, one
// thread per element.
import { header, LINEAR, WG, type GpuBuf, type Runtime } from '../runtime.js';

const MAIN = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = linear(wid, nwg, lid);
  if (i >= P.N) { return; }
`;
export const GELU = `const S = 0.7978845608028654;
fn th(x: f32) -> f32 { return tanh(clamp(S * (x + 0.044715 * x * x * x), -15.0, 15.0)); } // tanh is +-1 in fp32 past 15; unclamped, some drivers give inf/inf
fn gelu(x: f32) -> f32 { return 0.5 * x * (1.0 + th(x)); }
`;

const GELU_FWD = header([['inp', 'f32', 'read'], ['out', 'f32', 'read_write']], [['N', 'u32']]) + LINEAR + GELU + MAIN + `
  out[P.o_out + i] = gelu(inp[P.o_inp + i]);
}`;

const GELU_BWD = header([['inp', 'f32', 'read'], ['dout', 'f32', 'read'], ['dinp', 'f32', 'read_write']], [['N', 'u32']]) + LINEAR + GELU + MAIN + `
  let x = inp[P.o_inp + i];
  let t = th(x);
  let g = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * S * (1.0 + 3.0 * 0.044715 * x * x);
  dinp[P.o_dinp + i] += g * dout[P.o_dout + i];
}`;

const groups = (N: number) => Math.ceil(N / WG);

/** out (N) = gelu(inp), overwriting. */
export function geluForward(rt: Runtime, out: GpuBuf, inp: GpuBuf, N: number): void {
  rt.dispatch(rt.pipeline('gelu_fwd', GELU_FWD), [inp, out], [N], groups(N));
}

/** dinp (N) += gelu'(inp) * dout. */
export function geluBackward(rt: Runtime, dinp: GpuBuf, inp: GpuBuf, dout: GpuBuf, N: number): void {
  rt.dispatch(rt.pipeline('gelu_bwd', GELU_BWD), [inp, dout, dinp], [N], groups(N));
}
