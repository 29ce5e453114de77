/** The element of a comparison furthest past (or nearest to) its tolerance: err / tol is the margin used. */
export interface Worst {
  what: string;
  err: number;
  tol: number;
}

let recorder: ((w: Worst) => void) | undefined;

/**
 * Runs a conformance case and returns the worst comparison it made (largest err / tol), for the
 * selftest's table; the case still throws on the first comparison that fails.
 */
export async function withWorst(run: () => Promise<void>): Promise<{ worst?: Worst; error?: Error }> {
  let worst: Worst | undefined;
  const ratio = (w: Worst) => (w.tol > 0 ? w.err / w.tol : w.err > 0 ? Infinity : 0);
  recorder = (w) => {
    if (!worst || ratio(w) > ratio(worst)) worst = w;
  };
  try {
    await run();
    return { worst };
  } catch (err) {
    return { worst, error: err as Error };
  } finally {
    recorder = undefined;
  }
}

/** Throws unless |got - want| <= atol + rtol |want| everywhere, naming the worst element. */
export function assertClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol = 0): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length}, expected ${want.length}`);
  let worst = -1, worstExcess = 0;
  let margin = -1, marginRatio = -1; // the element nearest to (or furthest past) its tolerance
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]), tol = atol + rtol * Math.abs(want[i]);
    if (!(err <= tol) && (worst < 0 || err - tol > worstExcess)) {
      worst = i;
      worstExcess = err - tol;
    }
    if (recorder) {
      const r = Number.isNaN(err) ? Infinity : tol > 0 ? err / tol : err > 0 ? Infinity : 0;
      if (r > marginRatio) {
        margin = i;
        marginRatio = r;
      }
    }
  }
  if (recorder && margin >= 0) {
    const err = Math.abs(got[margin] - want[margin]);
    recorder({ what, err: Number.isNaN(err) ? Infinity : err, tol: atol + rtol * Math.abs(want[margin]) });
  }
  if (worst >= 0) {
    throw new Error(`${what}: element ${worst} is ${got[worst]}, expected ${want[worst]} (tolerance ${atol} + ${rtol}*|ref|)`);
  }
}
