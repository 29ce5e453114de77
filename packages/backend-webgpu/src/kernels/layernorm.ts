// LayerNorm: one workgroup per row with workgroup reductions; dw/db one thread per channel.
// The forward comes plain, or fused with the residual add before it (res = a + b, then the
// layernorm of res), which saves the pass that would read res back.
import { header, LINEAR, WG, type GpuBuf, type Runtime } from '../runtime.js';
import { REDUCE } from './reduce.js';

const ROW = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = group(wid, nwg);
  if (n >= P.N) { return; }
  let t = lid.x;
  let row = n * P.C;
`;

type Source = 'plain' | 'residual' | 'residual_inplace';

// The bindings each forward reads its row from; x(c) is element c of the row being normalised.
const SOURCES: Record<Source, { bindings: [string, 'f32', 'read' | 'read_write'][]; first: string; x: string }> = {
  plain: { bindings: [['inp', 'f32', 'read']], first: 'let x = inp[P.o_inp + row + c];', x: 'inp[P.o_inp + row + c]' },
  residual: {
    bindings: [['a', 'f32', 'read'], ['b', 'f32', 'read'], ['res', 'f32', 'read_write']],
    first: 'let x = a[P.o_a + row + c] + b[P.o_b + row + c]; res[P.o_res + row + c] = x;',
    x: 'res[P.o_res + row + c]',
  },
  residual_inplace: {
    bindings: [['b', 'f32', 'read'], ['res', 'f32', 'read_write']],
    first: 'let x = res[P.o_res + row + c] + b[P.o_b + row + c]; res[P.o_res + row + c] = x;',
    x: 'res[P.o_res + row + c]',
  },
};

// Each thread reads back only the elements it wrote itself, so no barrier is needed for res.
const FWD = (src: Source) => header([...SOURCES[src].bindings, ['w', 'f32', 'read'], ['bias', 'f32', 'read'], ['out', 'f32', 'read_write'], ['mean', 'f32', 'read_write'], ['rstd', 'f32', 'read_write']], [['N', 'u32'], ['C', 'u32']]) + LINEAR + REDUCE + ROW + `
  var s = 0.0;
  for (var c = t; c < P.C; c += ${WG}u) { ${SOURCES[src].first} s += x; }
  let m = wg_sum(s, t) / f32(P.C);
  var v = 0.0;
  for (var c = t; c < P.C; c += ${WG}u) { let d = ${SOURCES[src].x} - m; v += d * d; }
  let r = 1.0 / sqrt(wg_sum(v, t) / f32(P.C) + 1e-5);
  for (var c = t; c < P.C; c += ${WG}u) {
    out[P.o_out + row + c] = (${SOURCES[src].x} - m) * r * w[P.o_w + c] + bias[P.o_bias + c];
  }
  if (t == 0u) { mean[P.o_mean + n] = m; rstd[P.o_rstd + n] = r; }
}`;

const BWD_IN = header([['dout', 'f32', 'read'], ['inp', 'f32', 'read'], ['w', 'f32', 'read'], ['mean', 'f32', 'read'], ['rstd', 'f32', 'read'], ['dinp', 'f32', 'read_write']], [['N', 'u32'], ['C', 'u32']]) + LINEAR + REDUCE + ROW + `
  let m = mean[P.o_mean + n];
  let r = rstd[P.o_rstd + n];
  var a = 0.0;
  var bb = 0.0;
  for (var c = t; c < P.C; c += ${WG}u) {
    let dn = w[P.o_w + c] * dout[P.o_dout + row + c];
    a += dn;
    bb += dn * (inp[P.o_inp + row + c] - m) * r;
  }
  let dm = wg_sum(a, t) / f32(P.C);
  let dnm = wg_sum(bb, t) / f32(P.C);
  for (var c = t; c < P.C; c += ${WG}u) {
    let norm = (inp[P.o_inp + row + c] - m) * r;
    dinp[P.o_dinp + row + c] += (w[P.o_w + c] * dout[P.o_dout + row + c] - dm - norm * dnm) * r;
  }
}`;

const BWD_PARAMS = header([['dout', 'f32', 'read'], ['inp', 'f32', 'read'], ['mean', 'f32', 'read'], ['rstd', 'f32', 'read'], ['dw', 'f32', 'read_write'], ['db', 'f32', 'read_write']], [['N', 'u32'], ['C', 'u32']]) + LINEAR + `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = linear(wid, nwg, lid);
  if (c >= P.C) { return; }
  var sw = 0.0;
  var sb = 0.0;
  for (var n = 0u; n < P.N; n++) {
    let d = dout[P.o_dout + n * P.C + c];
    sb += d;
    sw += (inp[P.o_inp + n * P.C + c] - mean[P.o_mean + n]) * rstd[P.o_rstd + n] * d;
  }
  dw[P.o_dw + c] += sw;
  db[P.o_db + c] += sb;
}`;

export function layernormForward(rt: Runtime, out: GpuBuf, mean: GpuBuf, rstd: GpuBuf, inp: GpuBuf, w: GpuBuf, bias: GpuBuf, N: number, C: number): void {
  rt.dispatch(rt.pipeline('layernorm_fwd', FWD('plain')), [inp, w, bias, out, mean, rstd], [N, C], N);
}

/** res = a + b (res may be a), then out = layernorm(res). */
export function residualLayernormForward(rt: Runtime, res: GpuBuf, out: GpuBuf, mean: GpuBuf, rstd: GpuBuf, a: GpuBuf, b: GpuBuf, w: GpuBuf, bias: GpuBuf, N: number, C: number): void {
  if (res.buffer === a.buffer && res.offset === a.offset) {
    rt.dispatch(rt.pipeline('layernorm_fwd_residual_inplace', FWD('residual_inplace')), [b, res, w, bias, out, mean, rstd], [N, C], N);
  } else {
    rt.dispatch(rt.pipeline('layernorm_fwd_residual', FWD('residual')), [a, b, res, w, bias, out, mean, rstd], [N, C], N);
  }
}

export function layernormBackward(rt: Runtime, dinp: GpuBuf, dw: GpuBuf, db: GpuBuf, dout: GpuBuf, inp: GpuBuf, w: GpuBuf, mean: GpuBuf, rstd: GpuBuf, N: number, C: number): void {
  rt.dispatch(rt.pipeline('layernorm_bwd_in', BWD_IN), [dout, inp, w, mean, rstd, dinp], [N, C], N);
  rt.dispatch(rt.pipeline('layernorm_bwd_params', BWD_PARAMS), [dout, inp, mean, rstd, dw, db], [N, C], Math.ceil(C / WG));
}
