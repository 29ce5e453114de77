// sum x^2: workgroups reduce chunks into partial sums, then one workgroup sums the partials.
import { header, LINEAR, WG, type GpuBuf, type Runtime } from '../runtime.js';
import { REDUCE } from './reduce.js';

export const CHUNK = WG * 64;

const PARTIAL = header([['x', 'f32', 'read'], ['out', 'f32', 'read_write']], [['N', 'u32']]) + LINEAR + REDUCE + `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let g = group(wid, nwg);
  let start = g * ${CHUNK}u;
  var s = 0.0;
  for (var i = start + lid.x; i < min(P.N, start + ${CHUNK}u); i += ${WG}u) { let v = x[P.o_x + i]; s += v * v; }
  s = wg_sum(s, lid.x);
  if (lid.x == 0u) { out[P.o_out + g] = s; }
}`;

const FINAL = header([['x', 'f32', 'read'], ['out', 'f32', 'read_write']], [['N', 'u32']]) + LINEAR + REDUCE + `
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var s = 0.0;
  for (var i = lid.x; i < P.N; i += ${WG}u) { s += x[P.o_x + i]; }
  s = wg_sum(s, lid.x);
  if (lid.x == 0u) { out[P.o_out] = s; }
}`;

/** Writes the ceil(N / CHUNK) partial sums of x's squares into partials. */
export function sumSquaresPartial(rt: Runtime, partials: GpuBuf, x: GpuBuf, N: number): void {
  rt.dispatch(rt.pipeline('sum_squares_partial', PARTIAL), [x, partials], [N], Math.ceil(N / CHUNK));
}

/** out (1) = the sum of the first n partials. */
export function sumPartials(rt: Runtime, out: GpuBuf, partials: GpuBuf, n: number): void {
  rt.dispatch(rt.pipeline('sum_squares_final', FINAL), [partials, out], [n], 1);
}
