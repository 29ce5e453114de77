// gpt2.ts kernels in AssemblyScript, compiled to WebAssembly SIMD128 (and a relaxed-SIMD
// variant whose multiply-adds are fused). Pointers are byte offsets into the one shared memory;
// every kernel takes a work range [s, e) so the thread pool can split it, and returns f64
// (a partial sum for sum_squares, 0 otherwise). Shapes follow the Kernels contract in core.

// ---- helpers -------------------------------------------------------------------------------

@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

@inline function ldf(p: usize, i: i32): f32 {
  return load<f32>(p + (<usize>i << 2));
}

@inline function stf(p: usize, i: i32, v: f32): void {
  store<f32>(p + (<usize>i << 2), v);
}

/** sum a[i] * b[i], i < n */
function dot(a: usize, b: usize, n: i32): f32 {
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 2;
    acc0 = madd(v128.load(a + o), v128.load(b + o), acc0);
    acc1 = madd(v128.load(a + o + 16), v128.load(b + o + 16), acc1);
  }
  for (; i + 4 <= n; i += 4) acc0 = madd(v128.load(a + (<usize>i << 2)), v128.load(b + (<usize>i << 2)), acc0);
  let s = hsum(f32x4.add(acc0, acc1));
  for (; i < n; i++) s += ldf(a, i) * ldf(b, i);
  return s;
}

/** y[i] += alpha * x[i], i < n */
function axpy(y: usize, alpha: f32, x: usize, n: i32): void {
  const av = f32x4.splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, madd(av, v128.load(x + o), v128.load(y + o)));
  }
  for (; i < n; i++) stf(y, i, ldf(y, i) + alpha * ldf(x, i));
}

/** y[i] *= alpha, i < n */
function scale(y: usize, alpha: f32, n: i32): void {
  const av = f32x4.splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(y + (<usize>i << 2), f32x4.mul(v128.load(y + (<usize>i << 2)), av));
  for (; i < n; i++) stf(y, i, ldf(y, i) * alpha);
}

// ---- matmul --------------------------------------------------------------------------------

// out (N,OUT) = inp (N,IN) @ w (OUT,IN)^T + bias, for output columns [s, e).
// Register tile: 4 rows x 2 outputs = 8 vector accumulators. The reduction runs in blocks of KB
// inputs so a tile's 6 rows (24 KB) stay in L1 even for IN = 3072; each weight row pair is read
// once per 4 input rows.
const KB = 1024;
export function matmul_forward(out: usize, inp: usize, w: usize, bias: usize, N: i32, IN: i32, OUT: i32, s: i32, e: i32): f64 {
  if (N < 4) return gemv(out, inp, w, bias, N, IN, OUT, s, e);
  for (let kb = 0; kb < IN; kb += KB) {
    const ke = min(IN, kb + KB), first = kb == 0;
    let o = s;
    for (; o + 2 <= e; o += 2) {
      let n = 0;
      for (; n + 4 <= N; n += 4) tile4x2(out, inp, w, bias, n, o, IN, OUT, kb, ke, first);
      for (; n < N; n++) {
        for (let j = o; j < o + 2; j++) dotInto(out, inp, w, bias, n, j, IN, OUT, kb, ke, first);
      }
    }
    for (; o < e; o++) for (let n = 0; n < N; n++) dotInto(out, inp, w, bias, n, o, IN, OUT, kb, ke, first);
  }
  return 0;
}

/** out[n, o] (+)= inp[n, kb:ke] . w[o, kb:ke] (+ bias on the first block) */
@inline function dotInto(out: usize, inp: usize, w: usize, bias: usize, n: i32, o: i32, IN: i32, OUT: i32, kb: i32, ke: i32, first: bool): void {
  const k = <usize>kb << 2;
  const v = dot(inp + <usize>n * (<usize>IN << 2) + k, w + <usize>o * (<usize>IN << 2) + k, ke - kb);
  const r = n * OUT + o;
  stf(out, r, first ? v + (bias ? ldf(bias, o) : 0) : ldf(out, r) + v);
}

function tile4x2(out: usize, inp: usize, w: usize, bias: usize, n: i32, o: i32, IN: i32, OUT: i32, kb: i32, ke: i32, first: bool): void {
  const rowB = <usize>IN << 2;
  const w0 = w + <usize>o * rowB, w1 = w0 + rowB;
  const x0 = inp + <usize>n * rowB, x1 = x0 + rowB, x2 = x1 + rowB, x3 = x2 + rowB;
  let a00 = f32x4.splat(0), a01 = f32x4.splat(0), a10 = f32x4.splat(0), a11 = f32x4.splat(0);
  let a20 = f32x4.splat(0), a21 = f32x4.splat(0), a30 = f32x4.splat(0), a31 = f32x4.splat(0);
  const k4 = kb + ((ke - kb) & ~3);
  for (let i = kb; i < k4; i += 4) {
    const k = <usize>i << 2;
    const v0 = v128.load(w0 + k), v1 = v128.load(w1 + k);
    let x = v128.load(x0 + k);
    a00 = madd(x, v0, a00);
    a01 = madd(x, v1, a01);
    x = v128.load(x1 + k);
    a10 = madd(x, v0, a10);
    a11 = madd(x, v1, a11);
    x = v128.load(x2 + k);
    a20 = madd(x, v0, a20);
    a21 = madd(x, v1, a21);
    x = v128.load(x3 + k);
    a30 = madd(x, v0, a30);
    a31 = madd(x, v1, a31);
  }
  let s00 = hsum(a00), s01 = hsum(a01), s10 = hsum(a10), s11 = hsum(a11);
  let s20 = hsum(a20), s21 = hsum(a21), s30 = hsum(a30), s31 = hsum(a31);
  for (let i = k4; i < ke; i++) {
    const v0 = ldf(w0, i), v1 = ldf(w1, i);
    s00 += ldf(x0, i) * v0; s01 += ldf(x0, i) * v1;
    s10 += ldf(x1, i) * v0; s11 += ldf(x1, i) * v1;
    s20 += ldf(x2, i) * v0; s21 += ldf(x2, i) * v1;
    s30 += ldf(x3, i) * v0; s31 += ldf(x3, i) * v1;
  }
  const r = out + (<usize>(n * OUT + o) << 2), ro = <usize>OUT << 2;
  if (first) {
    const b0: f32 = bias ? ldf(bias, o) : 0, b1: f32 = bias ? ldf(bias, o + 1) : 0;
    store<f32>(r, s00 + b0); store<f32>(r + 4, s01 + b1);
    store<f32>(r + ro, s10 + b0); store<f32>(r + ro + 4, s11 + b1);
    store<f32>(r + 2 * ro, s20 + b0); store<f32>(r + 2 * ro + 4, s21 + b1);
    store<f32>(r + 3 * ro, s30 + b0); store<f32>(r + 3 * ro + 4, s31 + b1);
  } else {
    store<f32>(r, load<f32>(r) + s00); store<f32>(r + 4, load<f32>(r + 4) + s01);
    store<f32>(r + ro, load<f32>(r + ro) + s10); store<f32>(r + ro + 4, load<f32>(r + ro + 4) + s11);
    store<f32>(r + 2 * ro, load<f32>(r + 2 * ro) + s20); store<f32>(r + 2 * ro + 4, load<f32>(r + 2 * ro + 4) + s21);
    store<f32>(r + 3 * ro, load<f32>(r + 3 * ro) + s30); store<f32>(r + 3 * ro + 4, load<f32>(r + 3 * ro + 4) + s31);
  }
}

// Fewer than 4 rows (decoding): memory-bound, so four weight rows stream at once (8 accumulators)
// to keep enough loads in flight; each input row is reused from L1.
function gemv(out: usize, inp: usize, w: usize, bias: usize, N: i32, IN: i32, OUT: i32, s: i32, e: i32): f64 {
  const rowB = <usize>IN << 2, IN8 = IN & ~7;
  for (let n = 0; n < N; n++) {
    const x = inp + <usize>n * rowB;
    let o = s;
    for (; o + 4 <= e; o += 4) {
      const w0 = w + <usize>o * rowB, w1 = w0 + rowB, w2 = w1 + rowB, w3 = w2 + rowB;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
      for (let i = 0; i < IN8; i += 8) {
        const k = <usize>i << 2;
        const xa = v128.load(x + k), xb = v128.load(x + k + 16);
        a0 = madd(xa, v128.load(w0 + k), a0); c0 = madd(xb, v128.load(w0 + k + 16), c0);
        a1 = madd(xa, v128.load(w1 + k), a1); c1 = madd(xb, v128.load(w1 + k + 16), c1);
        a2 = madd(xa, v128.load(w2 + k), a2); c2 = madd(xb, v128.load(w2 + k + 16), c2);
        a3 = madd(xa, v128.load(w3 + k), a3); c3 = madd(xb, v128.load(w3 + k + 16), c3);
      }
      let s0 = hsum(f32x4.add(a0, c0)), s1 = hsum(f32x4.add(a1, c1)), s2 = hsum(f32x4.add(a2, c2)), s3 = hsum(f32x4.add(a3, c3));
      for (let i = IN8; i < IN; i++) {
        const xv = ldf(x, i);
        s0 += xv * ldf(w0, i); s1 += xv * ldf(w1, i); s2 += xv * ldf(w2, i); s3 += xv * ldf(w3, i);
      }
      const r = n * OUT + o;
      stf(out, r, s0 + (bias ? ldf(bias, o) : 0));
      stf(out, r + 1, s1 + (bias ? ldf(bias, o + 1) : 0));
      stf(out, r + 2, s2 + (bias ? ldf(bias, o + 2) : 0));
      stf(out, r + 3, s3 + (bias ? ldf(bias, o + 3) : 0));
    }
    for (; o < e; o++) stf(out, n * OUT + o, dot(x, w + <usize>o * rowB, IN) + (bias ? ldf(bias, o) : 0));
  }
  return 0;
}

// ---- matmul with int8 weights -------------------------------------------------------------

// out (N,OUT) = scale[o] * (inp (N,IN) . q[o,:]) + bias[o], for output columns [s, e). q (OUT,IN) is
// int8 with rows padded to 4 bytes (core's model/int8.ts), widened to f32 in registers, never the
// whole matrix. Four input rows share each widened pair of weight rows. One row (decoding) streams
// four weight rows at once and widens sixteen weights as four i32x4 lanes' bytes by shifts (fewer
// instructions than the int8 -> int16 -> int32 extends), against the input row reordered to match
// in this thread's scratch (IN floats at scratch + tid * scratchStride).
export function matmul_int8_forward(out: usize, inp: usize, q: usize, scale: usize, bias: usize, N: i32, IN: i32, OUT: i32, scratch: usize, scratchStride: i32, s: i32, e: i32, tid: i32): f64 {
  const rb = <usize>((IN + 3) & ~3);
  let n = 0;
  for (; n + 4 <= N; n += 4) {
    let o = s;
    for (; o + 2 <= e; o += 2) int8Tile4x2(out, inp, q, scale, bias, n, o, IN, OUT, rb);
    for (; o < e; o++) for (let r = n; r < n + 4; r++) int8Store(out, scale, bias, r, o, OUT, int8Dot(inp + <usize>r * (<usize>IN << 2), q + <usize>o * rb, IN));
  }
  const xt = scratch + <usize>tid * <usize>scratchStride;
  for (; n < N; n++) {
    const x = inp + <usize>n * (<usize>IN << 2);
    // xt[g + 4k + l] = x[g + 4l + k] in each block g of 16: byte k of lane l is weight g + 4l + k
    const I16 = IN & ~15;
    for (let g = 0; g < I16; g += 16) for (let k = 0; k < 4; k++) for (let l = 0; l < 4; l++) stf(xt, g + 4 * k + l, ldf(x, g + 4 * l + k));
    let o = s;
    for (; o + 4 <= e; o += 4) int8Row1x4(out, x, xt, q, scale, bias, n, o, IN, OUT, rb);
    for (; o < e; o++) int8Store(out, scale, bias, n, o, OUT, int8Dot(x, q + <usize>o * rb, IN));
  }
  return 0;
}

@inline function int8Store(out: usize, scale: usize, bias: usize, n: i32, o: i32, OUT: i32, dot: f32): void {
  stf(out, n * OUT + o, ldf(scale, o) * dot + (bias ? ldf(bias, o) : 0));
}

/** sum x[i] * q[i], i < n, q int8 */
function int8Dot(x: usize, q: usize, n: i32): f32 {
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) acc = madd(v128.load(x + (<usize>i << 2)), widen4(q + <usize>i), acc);
  let sum = hsum(acc);
  for (; i < n; i++) sum += ldf(x, i) * <f32>load<i8>(q + <usize>i);
  return sum;
}

/** four int8 at p as f32x4 */
@inline function widen4(p: usize): v128 {
  return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(i16x8.extend_low_i8x16_s(v128.load32_zero(p))));
}

// byte k (0..3) of each i32x4 lane of b, times 2^24, as f32x4: the byte moved to the lane's top and
// the rest masked off is exact as a float (one or two integer ops, not a shift pair), and scaling
// by a power of two changes no rounding; the dot products are scaled back by 2^-24
const TOP: u32 = 0xff000000;
@inline function byte0(b: v128): v128 { return f32x4.convert_i32x4_s(i32x4.shl(b, 24)); }
@inline function byte1(b: v128): v128 { return f32x4.convert_i32x4_s(v128.and(i32x4.shl(b, 16), i32x4.splat(TOP))); }
@inline function byte2(b: v128): v128 { return f32x4.convert_i32x4_s(v128.and(i32x4.shl(b, 8), i32x4.splat(TOP))); }
@inline function byte3(b: v128): v128 { return f32x4.convert_i32x4_s(v128.and(b, i32x4.splat(TOP))); }
const UNTOP: f32 = 1.0 / 16777216.0;

// one input row (x, and xt: x reordered per block of 16) against weight rows o..o+3
function int8Row1x4(out: usize, x: usize, xt: usize, q: usize, scale: usize, bias: usize, n: i32, o: i32, IN: i32, OUT: i32, rb: usize): void {
  const q0 = q + <usize>o * rb, q1 = q0 + rb, q2 = q1 + rb, q3 = q2 + rb;
  // two accumulators a row (a, c), so each takes two multiply-adds a step, not a chain of four
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
  const I16 = IN & ~15;
  for (let i = 0; i < I16; i += 16) {
    const k = <usize>i << 2;
    const x0 = v128.load(xt + k), x1 = v128.load(xt + k + 16), x2 = v128.load(xt + k + 32), x3 = v128.load(xt + k + 48);
    let b = v128.load(q0 + <usize>i);
    a0 = madd(x0, byte0(b), a0); c0 = madd(x1, byte1(b), c0); a0 = madd(x2, byte2(b), a0); c0 = madd(x3, byte3(b), c0);
    b = v128.load(q1 + <usize>i);
    a1 = madd(x0, byte0(b), a1); c1 = madd(x1, byte1(b), c1); a1 = madd(x2, byte2(b), a1); c1 = madd(x3, byte3(b), c1);
    b = v128.load(q2 + <usize>i);
    a2 = madd(x0, byte0(b), a2); c2 = madd(x1, byte1(b), c2); a2 = madd(x2, byte2(b), a2); c2 = madd(x3, byte3(b), c2);
    b = v128.load(q3 + <usize>i);
    a3 = madd(x0, byte0(b), a3); c3 = madd(x1, byte1(b), c3); a3 = madd(x2, byte2(b), a3); c3 = madd(x3, byte3(b), c3);
  }
  a0 = f32x4.add(a0, c0); a1 = f32x4.add(a1, c1); a2 = f32x4.add(a2, c2); a3 = f32x4.add(a3, c3);
  let s0 = hsum(a0) * UNTOP, s1 = hsum(a1) * UNTOP, s2 = hsum(a2) * UNTOP, s3 = hsum(a3) * UNTOP;
  if (I16 < IN) {
    const xr = x + (<usize>I16 << 2), n16 = IN - I16, o16 = <usize>I16;
    s0 += int8Dot(xr, q0 + o16, n16); s1 += int8Dot(xr, q1 + o16, n16);
    s2 += int8Dot(xr, q2 + o16, n16); s3 += int8Dot(xr, q3 + o16, n16);
  }
  int8Store(out, scale, bias, n, o, OUT, s0);
  int8Store(out, scale, bias, n, o + 1, OUT, s1);
  int8Store(out, scale, bias, n, o + 2, OUT, s2);
  int8Store(out, scale, bias, n, o + 3, OUT, s3);
}

// input rows n..n+3 against weight rows o, o+1, four inputs a step (8 accumulators)
function int8Tile4x2(out: usize, inp: usize, q: usize, scale: usize, bias: usize, n: i32, o: i32, IN: i32, OUT: i32, rb: usize): void {
  const rowB = <usize>IN << 2;
  const q0 = q + <usize>o * rb, q1 = q0 + rb;
  const x0 = inp + <usize>n * rowB, x1 = x0 + rowB, x2 = x1 + rowB, x3 = x2 + rowB;
  let a00 = f32x4.splat(0), a01 = f32x4.splat(0), a10 = f32x4.splat(0), a11 = f32x4.splat(0);
  let a20 = f32x4.splat(0), a21 = f32x4.splat(0), a30 = f32x4.splat(0), a31 = f32x4.splat(0);
  const I4 = IN & ~3;
  for (let i = 0; i < I4; i += 4) {
    const k = <usize>i << 2;
    const v0 = widen4(q0 + <usize>i), v1 = widen4(q1 + <usize>i);
    let x = v128.load(x0 + k);
    a00 = madd(x, v0, a00); a01 = madd(x, v1, a01);
    x = v128.load(x1 + k);
    a10 = madd(x, v0, a10); a11 = madd(x, v1, a11);
    x = v128.load(x2 + k);
    a20 = madd(x, v0, a20); a21 = madd(x, v1, a21);
    x = v128.load(x3 + k);
    a30 = madd(x, v0, a30); a31 = madd(x, v1, a31);
  }
  let s00 = hsum(a00), s01 = hsum(a01), s10 = hsum(a10), s11 = hsum(a11);
  let s20 = hsum(a20), s21 = hsum(a21), s30 = hsum(a30), s31 = hsum(a31);
  for (let i = I4; i < IN; i++) {
    const v0 = <f32>load<i8>(q0 + <usize>i), v1 = <f32>load<i8>(q1 + <usize>i);
    s00 += ldf(x0, i) * v0; s01 += ldf(x0, i) * v1;
    s10 += ldf(x1, i) * v0; s11 += ldf(x1, i) * v1;
    s20 += ldf(x2, i) * v0; s21 += ldf(x2, i) * v1;
    s30 += ldf(x3, i) * v0; s31 += ldf(x3, i) * v1;
  }
  int8Store(out, scale, bias, n, o, OUT, s00); int8Store(out, scale, bias, n, o + 1, OUT, s01);
  int8Store(out, scale, bias, n + 1, o, OUT, s10); int8Store(out, scale, bias, n + 1, o + 1, OUT, s11);
  int8Store(out, scale, bias, n + 2, o, OUT, s20); int8Store(out, scale, bias, n + 2, o + 1, OUT, s21);
  int8Store(out, scale, bias, n + 3, o, OUT, s30); int8Store(out, scale, bias, n + 3, o + 1, OUT, s31);
}

// dinp (N,IN) += dout (N,OUT) @ w (OUT,IN), for rows [s, e).
// Register tile: 2 rows x 16 columns of dinp (8 accumulators). The weight rows are taken in
// blocks of OB that stay in L2 while every row pair passes over them, so W streams from memory
// once per thread rather than once per row pair.
const OB = 64;
export function matmul_backward_input(dinp: usize, dout: usize, w: usize, N: i32, IN: i32, OUT: i32, s: i32, e: i32): f64 {
  const rowB = <usize>IN << 2, IN16 = IN & ~15, outB = <usize>OUT << 2;
  for (let ob = 0; ob < OUT; ob += OB) {
    const oe = min(OUT, ob + OB);
    let n = s;
    for (; n + 2 <= e; n += 2) {
      const d0 = dout + <usize>n * outB, d1 = d0 + outB;
      const y0 = dinp + <usize>n * rowB, y1 = y0 + rowB;
      for (let i = 0; i < IN16; i += 16) {
        const k = <usize>i << 2;
        let a0 = v128.load(y0 + k), a1 = v128.load(y0 + k + 16), a2 = v128.load(y0 + k + 32), a3 = v128.load(y0 + k + 48);
        let c0 = v128.load(y1 + k), c1 = v128.load(y1 + k + 16), c2 = v128.load(y1 + k + 32), c3 = v128.load(y1 + k + 48);
        for (let o = ob; o < oe; o++) {
          const wr = w + <usize>o * rowB + k;
          const g0 = f32x4.splat(ldf(d0, o)), g1 = f32x4.splat(ldf(d1, o));
          const v0 = v128.load(wr), v1 = v128.load(wr + 16), v2 = v128.load(wr + 32), v3 = v128.load(wr + 48);
          a0 = madd(g0, v0, a0); a1 = madd(g0, v1, a1); a2 = madd(g0, v2, a2); a3 = madd(g0, v3, a3);
          c0 = madd(g1, v0, c0); c1 = madd(g1, v1, c1); c2 = madd(g1, v2, c2); c3 = madd(g1, v3, c3);
        }
        v128.store(y0 + k, a0); v128.store(y0 + k + 16, a1); v128.store(y0 + k + 32, a2); v128.store(y0 + k + 48, a3);
        v128.store(y1 + k, c0); v128.store(y1 + k + 16, c1); v128.store(y1 + k + 32, c2); v128.store(y1 + k + 48, c3);
      }
      if (IN16 < IN) {
        for (let o = ob; o < oe; o++) {
          const wr = w + <usize>o * rowB + (<usize>IN16 << 2);
          axpy(y0 + (<usize>IN16 << 2), ldf(d0, o), wr, IN - IN16);
          axpy(y1 + (<usize>IN16 << 2), ldf(d1, o), wr, IN - IN16);
        }
      }
    }
    for (; n < e; n++) {
      const d0 = dout + <usize>n * outB, y0 = dinp + <usize>n * rowB;
      for (let o = ob; o < oe; o++) axpy(y0, ldf(d0, o), w + <usize>o * rowB, IN);
    }
  }
  return 0;
}

// dw (OUT,IN) += dout^T @ inp and dbias (OUT) += column sums of dout, for weight rows [s, e).
// dw 0 is a frozen weight (LoRA's base): its product is skipped, and only dbias accumulates.
export function matmul_backward_weight(dw: usize, dbias: usize, dout: usize, inp: usize, N: i32, IN: i32, OUT: i32, scratch: usize, scratchStride: i32, s: i32, e: i32, tid: i32): f64 {
  if (dw) weightRows(dw, dout, inp, N, IN, OUT, scratch + <usize>tid * <usize>scratchStride, s, e);
  if (dbias) {
    for (let j = s; j < e; j++) {
      let acc: f32 = 0;
      for (let n = 0; n < N; n++) acc += ldf(dout, n * OUT + j);
      stf(dbias, j, ldf(dbias, j) + acc);
    }
  }
  return 0;
}

// dw rows [s, e). Register tile: 2 weight rows x 16 columns (8 accumulators), streaming every input
// row. The two dout columns a tile needs are gathered once into this thread's scratch g (2N floats),
// instead of strided reads for every column chunk.
function weightRows(dw: usize, dout: usize, inp: usize, N: i32, IN: i32, OUT: i32, g: usize, s: i32, e: i32): void {
  const rowB = <usize>IN << 2, IN16 = IN & ~15;
  let o = s;
  for (; o + 2 <= e; o += 2) {
    const y0 = dw + <usize>o * rowB, y1 = y0 + rowB;
    for (let n = 0; n < N; n++) {
      const d = dout + (<usize>(n * OUT + o) << 2);
      store<f32>(g + (<usize>n << 3), load<f32>(d));
      store<f32>(g + (<usize>n << 3) + 4, load<f32>(d + 4));
    }
    for (let i = 0; i < IN16; i += 16) {
      const k = <usize>i << 2;
      let a0 = v128.load(y0 + k), a1 = v128.load(y0 + k + 16), a2 = v128.load(y0 + k + 32), a3 = v128.load(y0 + k + 48);
      let c0 = v128.load(y1 + k), c1 = v128.load(y1 + k + 16), c2 = v128.load(y1 + k + 32), c3 = v128.load(y1 + k + 48);
      for (let n = 0; n < N; n++) {
        const xr = inp + <usize>n * rowB + k;
        const g0 = f32x4.splat(load<f32>(g + (<usize>n << 3))), g1 = f32x4.splat(load<f32>(g + (<usize>n << 3) + 4));
        const v0 = v128.load(xr), v1 = v128.load(xr + 16), v2 = v128.load(xr + 32), v3 = v128.load(xr + 48);
        a0 = madd(g0, v0, a0); a1 = madd(g0, v1, a1); a2 = madd(g0, v2, a2); a3 = madd(g0, v3, a3);
        c0 = madd(g1, v0, c0); c1 = madd(g1, v1, c1); c2 = madd(g1, v2, c2); c3 = madd(g1, v3, c3);
      }
      v128.store(y0 + k, a0); v128.store(y0 + k + 16, a1); v128.store(y0 + k + 32, a2); v128.store(y0 + k + 48, a3);
      v128.store(y1 + k, c0); v128.store(y1 + k + 16, c1); v128.store(y1 + k + 32, c2); v128.store(y1 + k + 48, c3);
    }
    if (IN16 < IN) {
      for (let n = 0; n < N; n++) {
        const xr = inp + <usize>n * rowB + (<usize>IN16 << 2);
        axpy(y0 + (<usize>IN16 << 2), load<f32>(g + (<usize>n << 3)), xr, IN - IN16);
        axpy(y1 + (<usize>IN16 << 2), load<f32>(g + (<usize>n << 3) + 4), xr, IN - IN16);
      }
    }
  }
  for (; o < e; o++) {
    const y0 = dw + <usize>o * rowB;
    for (let n = 0; n < N; n++) axpy(y0, ldf(dout, n * OUT + o), inp + <usize>n * rowB, IN);
  }
}

// ---- attention (flash style: online softmax, log-sum-exp saved, no (T,T) matrix) -------------

// out (B,T,C), lse (B,NH,T) from qkv (B,T,3C), for (b, h) pairs [s, e)
export function attention_forward(out: usize, lse: usize, qkv: usize, B: i32, T: i32, NH: i32, HS: i32, s: i32, e: i32): f64 {
  const C = NH * HS, C3 = 3 * C, sc: f32 = 1 / Mathf.sqrt(<f32>HS);
  for (let p = s; p < e; p++) {
    const b = p / NH, h = p % NH;
    for (let t = 0; t < T; t++) {
      const q = qkv + (<usize>((b * T + t) * C3 + h * HS) << 2);
      const o = out + (<usize>((b * T + t) * C + h * HS) << 2);
      memory.fill(o, 0, <usize>HS << 2);
      let m: f32 = -Infinity, l: f32 = 0;
      for (let t2 = 0; t2 <= t; t2++) {
        const k = qkv + (<usize>((b * T + t2) * C3 + C + h * HS) << 2);
        const x = dot(q, k, HS) * sc;
        if (x > m) {
          const r = Mathf.exp(m - x);
          l *= r;
          scale(o, r, HS);
          m = x;
        }
        const pr = Mathf.exp(x - m);
        l += pr;
        axpy(o, pr, k + (<usize>C << 2), HS);
      }
      scale(o, 1 / l, HS);
      stf(lse, (b * NH + h) * T + t, m + Mathf.log(l));
    }
  }
  return 0;
}

// dqkv (B,T,3C) += ..., for (b, h) pairs [s, e): p = exp(s - lse); D = dout . out;
// dv += p dout; ds = p (dout . v - D) * scale; dq += ds k; dk += ds q
export function attention_backward(dqkv: usize, dout: usize, qkv: usize, out: usize, lse: usize, B: i32, T: i32, NH: i32, HS: i32, s: i32, e: i32): f64 {
  const C = NH * HS, C3 = 3 * C, sc: f32 = 1 / Mathf.sqrt(<f32>HS);
  for (let p = s; p < e; p++) {
    const b = p / NH, h = p % NH;
    for (let t = 0; t < T; t++) {
      const qo = (<usize>((b * T + t) * C3 + h * HS)) << 2, oo = (<usize>((b * T + t) * C + h * HS)) << 2;
      const q = qkv + qo, dq = dqkv + qo, d = dout + oo;
      const D = dot(d, out + oo, HS);
      const rowLse = ldf(lse, (b * NH + h) * T + t);
      for (let t2 = 0; t2 <= t; t2++) {
        const ko = (<usize>((b * T + t2) * C3 + C + h * HS)) << 2, vo = ko + (<usize>C << 2);
        const pr = Mathf.exp(dot(q, qkv + ko, HS) * sc - rowLse);
        const ds = pr * (dot(d, qkv + vo, HS) - D) * sc;
        axpy(dqkv + vo, pr, d, HS);
        axpy(dq, ds, qkv + ko, HS);
        axpy(dqkv + ko, ds, q, HS);
      }
    }
  }
  return 0;
}

// row b writes k, v of its T new positions into the caches (B,NH,maxT,HS) at pos[b] (i32, B), then
// attends; a row with pos[b] < 0 is skipped; pairs [s, e)
export function attention_decode(out: usize, qkv: usize, kc: usize, vc: usize, posp: usize, B: i32, T: i32, NH: i32, HS: i32, maxT: i32, s: i32, e: i32): f64 {
  const C = NH * HS, C3 = 3 * C, sc: f32 = 1 / Mathf.sqrt(<f32>HS), hsB = <usize>HS << 2;
  for (let p = s; p < e; p++) {
    const b = p / NH, h = p % NH;
    const pos = load<i32>(posp + (<usize>b << 2));
    if (pos < 0) continue;
    const cache = <usize>((b * NH + h) * maxT) * hsB;
    for (let t = 0; t < T; t++) {
      const src = qkv + (<usize>((b * T + t) * C3 + h * HS) << 2), dst = cache + <usize>(pos + t) * hsB;
      memory.copy(kc + dst, src + (<usize>C << 2), hsB);
      memory.copy(vc + dst, src + (<usize>(2 * C) << 2), hsB);
    }
    for (let t = 0; t < T; t++) {
      const q = qkv + (<usize>((b * T + t) * C3 + h * HS) << 2);
      const o = out + (<usize>((b * T + t) * C + h * HS) << 2);
      memory.fill(o, 0, hsB);
      let m: f32 = -Infinity, l: f32 = 0;
      for (let t2 = 0; t2 <= pos + t; t2++) {
        const x = dot(q, kc + cache + <usize>t2 * hsB, HS) * sc;
        if (x > m) {
          const r = Mathf.exp(m - x);
          l *= r;
          scale(o, r, HS);
          m = x;
        }
        const pr = Mathf.exp(x - m);
        l += pr;
        axpy(o, pr, vc + cache + <usize>t2 * hsB, HS);
      }
      scale(o, 1 / l, HS);
    }
  }
  return 0;
}

// ---- the rest --------------------------------------------------------------------------------

// out (B*T, C) rows [s, e) = wte[tokens] + wpe[t]
export function encoder_forward(out: usize, tokens: usize, wte: usize, wpe: usize, B: i32, T: i32, C: i32, s: i32, e: i32): f64 {
  for (let bt = s; bt < e; bt++) {
    const tok = load<i32>(tokens + (<usize>bt << 2)), t = bt % T;
    const o = out + (<usize>(bt * C) << 2), a = wte + (<usize>(tok * C) << 2), p = wpe + (<usize>(t * C) << 2);
    let c = 0;
    for (; c + 4 <= C; c += 4) v128.store(o + (<usize>c << 2), f32x4.add(v128.load(a + (<usize>c << 2)), v128.load(p + (<usize>c << 2))));
    for (; c < C; c++) stf(o, c, ldf(a, c) + ldf(p, c));
  }
  return 0;
}

// channels [s, e): tokens may repeat, so threads split channels, never rows
export function encoder_backward(dwte: usize, dwpe: usize, dout: usize, tokens: usize, B: i32, T: i32, C: i32, s: i32, e: i32): f64 {
  for (let bt = 0; bt < B * T; bt++) {
    const tok = load<i32>(tokens + (<usize>bt << 2)), t = bt % T;
    for (let c = s; c < e; c++) {
      const g = ldf(dout, bt * C + c);
      stf(dwte, tok * C + c, ldf(dwte, tok * C + c) + g);
      stf(dwpe, t * C + c, ldf(dwpe, t * C + c) + g);
    }
  }
  return 0;
}

// rows [s, e)
export function layernorm_forward(out: usize, mean: usize, rstd: usize, inp: usize, w: usize, b: usize, N: i32, C: i32, s: i32, e: i32): f64 {
  for (let n = s; n < e; n++) {
    const x = inp + (<usize>(n * C) << 2), o = out + (<usize>(n * C) << 2);
    let m: f64 = 0;
    for (let c = 0; c < C; c++) m += <f64>ldf(x, c);
    m /= C;
    let v: f64 = 0;
    for (let c = 0; c < C; c++) {
      const d = <f64>ldf(x, c) - m;
      v += d * d;
    }
    const r = <f32>(1 / Math.sqrt(v / C + 1e-5)), mf = <f32>m;
    for (let c = 0; c < C; c++) stf(o, c, (ldf(x, c) - mf) * r * ldf(w, c) + ldf(b, c));
    stf(mean, n, mf);
    stf(rstd, n, r);
  }
  return 0;
}

// dinp rows [s, e)
export function layernorm_backward_input(dinp: usize, dout: usize, inp: usize, w: usize, mean: usize, rstd: usize, N: i32, C: i32, s: i32, e: i32): f64 {
  for (let n = s; n < e; n++) {
    const x = inp + (<usize>(n * C) << 2), d = dout + (<usize>(n * C) << 2), di = dinp + (<usize>(n * C) << 2);
    const m = ldf(mean, n), r = ldf(rstd, n);
    let dm: f32 = 0, dnm: f32 = 0;
    for (let c = 0; c < C; c++) {
      const dn = ldf(w, c) * ldf(d, c);
      dm += dn;
      dnm += dn * (ldf(x, c) - m) * r;
    }
    dm /= <f32>C;
    dnm /= <f32>C;
    for (let c = 0; c < C; c++) {
      const norm = (ldf(x, c) - m) * r;
      stf(di, c, ldf(di, c) + (ldf(w, c) * ldf(d, c) - dm - norm * dnm) * r);
    }
  }
  return 0;
}

// dw, db channels [s, e)
export function layernorm_backward_params(dw: usize, db: usize, dout: usize, inp: usize, mean: usize, rstd: usize, N: i32, C: i32, s: i32, e: i32): f64 {
  for (let n = 0; n < N; n++) {
    const m = ldf(mean, n), r = ldf(rstd, n);
    const x = inp + (<usize>(n * C) << 2), d = dout + (<usize>(n * C) << 2);
    for (let c = s; c < e; c++) {
      stf(db, c, ldf(db, c) + ldf(d, c));
      stf(dw, c, ldf(dw, c) + (ldf(x, c) - m) * r * ldf(d, c));
    }
  }
  return 0;
}

const GS: f64 = 0.7978845608028654; // sqrt(2 / pi)

export function gelu_forward(out: usize, inp: usize, s: i32, e: i32): f64 {
  for (let i = s; i < e; i++) {
    const x = <f64>ldf(inp, i);
    stf(out, i, <f32>(0.5 * x * (1 + Math.tanh(GS * (x + 0.044715 * x * x * x)))));
  }
  return 0;
}

export function gelu_backward(dinp: usize, inp: usize, dout: usize, s: i32, e: i32): f64 {
  for (let i = s; i < e; i++) {
    const x = <f64>ldf(inp, i);
    const th = Math.tanh(GS * (x + 0.044715 * x * x * x));
    const g = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * GS * (1 + 3 * 0.044715 * x * x);
    stf(dinp, i, ldf(dinp, i) + <f32>(g * <f64>ldf(dout, i)));
  }
  return 0;
}

export function add(out: usize, a: usize, b: usize, s: i32, e: i32): f64 {
  let i = s;
  for (; i + 4 <= e; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < e; i++) stf(out, i, ldf(a, i) + ldf(b, i));
  return 0;
}

// out (N) += inp * mult for elements [s, e) the mask keeps: dropoutHash(seed, i) >= keepFrom (core's
// dropout.ts, bit for bit); keepFrom = floor(p * 2^32) and mult = fround(scale / (1 - p)) come from
// the host
export function scaled_dropout(out: usize, inp: usize, mult: f32, keepFrom: u32, seed: u32, s: i32, e: i32): f64 {
  for (let i = s; i < e; i++) {
    if (dropoutHash(seed, <u32>i) >= keepFrom) stf(out, i, ldf(out, i) + ldf(inp, i) * mult);
  }
  return 0;
}

// lowbias32 of seed * golden + i, on u32 arithmetic (wrapping multiplies, logical shifts)
@inline function dropoutHash(seed: u32, i: u32): u32 {
  let x: u32 = seed * 0x9e3779b9 + i;
  x ^= x >> 16;
  x *= 0x21f0aaad;
  x ^= x >> 15;
  x *= 0x735a2d97;
  x ^= x >> 15;
  return x;
}

// rows [s, e); a negative target gives loss 0
// hits (0 = none): 1 where the target is the row's argmax (the maximum, and no earlier logit equals it)
export function cross_entropy_forward(losses: usize, hits: usize, logits: usize, targets: usize, N: i32, V: i32, s: i32, e: i32): f64 {
  for (let n = s; n < e; n++) {
    const t = load<i32>(targets + (<usize>n << 2));
    if (hits) stf(hits, n, 0);
    if (t < 0) {
      stf(losses, n, 0);
      continue;
    }
    const z = logits + (<usize>n * <usize>V << 2);
    let mx: f32 = -Infinity;
    for (let i = 0; i < V; i++) mx = max(mx, ldf(z, i));
    let sum: f64 = 0;
    for (let i = 0; i < V; i++) sum += Mathf.exp(ldf(z, i) - mx);
    stf(losses, n, <f32>(Math.log(sum) + mx - ldf(z, t)));
    if (hits && ldf(z, t) == mx) {
      let first = 0;
      while (ldf(z, first) != mx) first++;
      if (first == t) stf(hits, n, 1);
    }
  }
  return 0;
}

// rows [s, e): dlogits = scale * (softmax - onehot), overwriting; safe in place
export function cross_entropy_backward(dlogits: usize, logits: usize, targets: usize, sc: f32, N: i32, V: i32, s: i32, e: i32): f64 {
  for (let n = s; n < e; n++) {
    const t = load<i32>(targets + (<usize>n << 2));
    const z = logits + (<usize>n * <usize>V << 2), d = dlogits + (<usize>n * <usize>V << 2);
    if (t < 0) {
      memory.fill(d, 0, <usize>V << 2);
      continue;
    }
    let mx: f32 = -Infinity;
    for (let i = 0; i < V; i++) mx = max(mx, ldf(z, i));
    let sum: f64 = 0;
    for (let i = 0; i < V; i++) sum += Mathf.exp(ldf(z, i) - mx);
    const inv = <f32>(<f64>sc / sum);
    for (let i = 0; i < V; i++) stf(d, i, Mathf.exp(ldf(z, i) - mx) * inv);
    stf(d, t, ldf(d, t) - sc);
  }
  return 0;
}

export function sum_squares(x: usize, s: i32, e: i32): f64 {
  let acc: f64 = 0;
  for (let i = s; i < e; i++) {
    const v = <f64>ldf(x, i);
    acc += v * v;
  }
  return acc;
}

// torch.optim.AdamW; c1, c2 are the bias corrections 1 - beta^step. 1 - beta comes from the
// host in double precision, rounded once, as torch passes it (1 - 0.999f in fp32 is off by 1e-5).
export function adamw(params: usize, grads: usize, m: usize, v: usize, lr: f32, b1: f32, b2: f32, omb1: f32, omb2: f32, eps: f32, wd: f32, c1: f32, c2: f32, gs: f32, s: i32, e: i32): f64 {
  for (let i = s; i < e; i++) {
    const g = ldf(grads, i) * gs;
    const mi = b1 * ldf(m, i) + omb1 * g;
    const vi = b2 * ldf(v, i) + omb2 * g * g;
    stf(m, i, mi);
    stf(v, i, vi);
    const p = ldf(params, i);
    stf(params, i, p - lr * (mi / c1 / (Mathf.sqrt(vi / c2) + eps) + wd * p));
  }
  return 0;
}
