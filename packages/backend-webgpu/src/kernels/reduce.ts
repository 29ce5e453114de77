// A workgroup-wide sum in workgroup memory, shared by the row kernels (layernorm, cross-entropy).
import { WG } from '../runtime.js';

export const REDUCE = `
var<workgroup> red: array<f32, ${WG}>;
fn wg_sum(v: f32, t: u32) -> f32 {
  workgroupBarrier();
  red[t] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] += red[t + s]; }
    workgroupBarrier();
  }
  return red[0];
}
fn wg_max(v: f32, t: u32) -> f32 {
  workgroupBarrier();
  red[t] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] = max(red[t], red[t + s]); }
    workgroupBarrier();
  }
  return red[0];
}
`;
