// Softmax cross-entropy: one workgroup per row (max and sum by workgroup reductions), with
// next-token hits (accuracy) when asked. The
// backward is the fused classifier: the row's loss, then dlogits = scale * (softmax - onehot)
// in place when dlogits is the logits, in one pass over them.
import { header, LINEAR, WG, type GpuBuf, type Runtime } from '../runtime.js';
import { REDUCE } from './reduce.js';

const ROW = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = group(wid, nwg);
  if (n >= P.N) { return; }
  let t = lid.x;
  let row = P.o_z + n * P.V;
  let tgt = targets[P.o_targets + n];
  var mx = -3.0e38;
  for (var i = t; i < P.V; i += ${WG}u) { mx = max(mx, z[row + i]); }
  mx = wg_max(mx, t);
  var s = 0.0;
  for (var i = t; i < P.V; i += ${WG}u) { s += exp(z[row + i] - mx); }
  s = wg_sum(s, t);
`;

// the row's loss, from thread 0, before any thread overwrites the row
const LOSS = `
  if (t == 0u) {
    if (tgt < 0) { losses[P.o_losses + n] = 0.0; }
    else { losses[P.o_losses + n] = log(s) + mx - z[row + u32(tgt)]; }
  }
`;

const FWD = header([['z', 'f32', 'read'], ['targets', 'i32', 'read'], ['losses', 'f32', 'read_write']], [['N', 'u32'], ['V', 'u32']]) + LINEAR + REDUCE + ROW + LOSS + `}`;

// with hits: 1 where the target is the row's argmax (the maximum, and no earlier logit equals it)
const FWD_HITS = header([['z', 'f32', 'read'], ['targets', 'i32', 'read'], ['losses', 'f32', 'read_write'], ['hits', 'f32', 'read_write']], [['N', 'u32'], ['V', 'u32']]) + LINEAR + REDUCE + ROW + LOSS + `
  var earlier = 0.0;
  if (tgt >= 0) {
    for (var i = t; i < u32(tgt); i += ${WG}u) { if (z[row + i] == mx) { earlier = 1.0; } }
  }
  earlier = wg_max(earlier, t);
  if (t == 0u) {
    var hit = 0.0;
    if (tgt >= 0 && z[row + u32(tgt)] == mx && earlier == 0.0) { hit = 1.0; }
    hits[P.o_hits + n] = hit;
  }
}`;

const BWD_INPLACE = header([['z', 'f32', 'read_write'], ['targets', 'i32', 'read'], ['losses', 'f32', 'read_write']], [['N', 'u32'], ['V', 'u32'], ['scale', 'f32']]) + LINEAR + REDUCE + ROW + LOSS + `
  workgroupBarrier();
  for (var i = t; i < P.V; i += ${WG}u) {
    var g = 0.0;
    if (tgt >= 0) {
      g = P.scale * exp(z[row + i] - mx) / s;
      if (i == u32(tgt)) { g -= P.scale; }
    }
    z[row + i] = g;
  }
}`;

export function crossEntropyForward(rt: Runtime, losses: GpuBuf, hits: GpuBuf | null, logits: GpuBuf, targets: GpuBuf, N: number, V: number): void {
  if (hits) rt.dispatch(rt.pipeline('ce_fwd_hits', FWD_HITS), [logits, targets, losses, hits], [N, V], N);
  else rt.dispatch(rt.pipeline('ce_fwd', FWD), [logits, targets, losses], [N, V], N);
}

/** In place (dlogits === logits, as core calls it); otherwise the logits are copied into dlogits first. */
export function crossEntropyBackward(rt: Runtime, dlogits: GpuBuf, losses: GpuBuf, logits: GpuBuf, targets: GpuBuf, scale: number, N: number, V: number): void {
  if (dlogits.buffer !== logits.buffer || dlogits.offset !== logits.offset) rt.copy(dlogits, logits);
  rt.dispatch(rt.pipeline('ce_bwd', BWD_INPLACE), [dlogits, targets, losses], [N, V, { f32: scale }], N);
}
