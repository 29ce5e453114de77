// AdamW (torch.optim.AdamW), one thread per parameter. 1 - beta comes from the host in double
// precision, rounded once, as torch passes it.
import { header, LINEAR, WG, type GpuBuf, type Runtime } from '../runtime.js';

const ADAMW = header(
  [['g', 'f32', 'read'], ['p', 'f32', 'read_write'], ['m', 'f32', 'read_write'], ['v', 'f32', 'read_write']],
  [['N', 'u32'], ['lr', 'f32'], ['b1', 'f32'], ['b2', 'f32'], ['omb1', 'f32'], ['omb2', 'f32'], ['eps', 'f32'], ['wd', 'f32'], ['c1', 'f32'], ['c2', 'f32'], ['gs', 'f32']],
) + LINEAR + `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = linear(wid, nwg, lid);
  if (i >= P.N) { return; }
  let grad = g[P.o_g + i] * P.gs;
  let mi = P.b1 * m[P.o_m + i] + P.omb1 * grad;
  let vi = P.b2 * v[P.o_v + i] + P.omb2 * grad * grad;
  m[P.o_m + i] = mi;
  v[P.o_v + i] = vi;
  let pi = p[P.o_p + i];
  p[P.o_p + i] = pi - P.lr * (mi / P.c1 / (sqrt(vi / P.c2) + P.eps) + P.wd * pi);
}`;

export function adamw(rt: Runtime, params: GpuBuf, grads: GpuBuf, m: GpuBuf, v: GpuBuf, N: number, lr: number, beta1: number, beta2: number, eps: number, wd: number, step: number, gradScale: number): void {
  const f = (x: number) => ({ f32: x });
  const c1 = 1 - Math.pow(beta1, step), c2 = 1 - Math.pow(beta2, step);
  rt.dispatch(rt.pipeline('adamw', ADAMW), [grads, params, m, v], [N, f(lr), f(beta1), f(beta2), f(1 - beta1), f(1 - beta2), f(eps), f(wd), f(c1), f(c2), f(gradScale)], Math.ceil(N / WG));
}
