import { describe, expect, it } from 'vitest';
import { parsePrecision, roundF16, roundOperand, TOLERANCES } from './precision.js';
import { createReferenceBackend } from './backends/reference/index.js';
import { GPT2 } from './model/gpt2.js';
import { loadFixture } from './conformance/fixtures.js';

describe('operand rounding', () => {
  // expected values are the IEEE encodings: 1/3 is 0x3555 in binary16, 0x3EAB in bfloat16
  it('rounds to binary16 like IEEE', () => {
    expect(roundF16(1 / 3)).toBe(0.333251953125);
    expect(roundF16(65504)).toBe(65504);
    expect(roundF16(65520)).toBe(Infinity);
    expect(roundF16(2 ** -24)).toBe(2 ** -24); // smallest subnormal
    expect(roundF16(2 ** -26)).toBe(0); // below half of it
    expect(roundF16(3 * 2 ** -25)).toBe(2 ** -23); // a tie goes to even
    expect(roundF16(1 + 2 ** -11)).toBe(1); // a tie goes to even
    expect(roundF16(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9);
    expect(roundF16(-2.5e-3)).toBe(-1311 * 2 ** -19); // 2.5e-3 / 2^-19 = 1310.72
  });
  it('rounds to bfloat16 and tf32 to nearest even', () => {
    expect(roundOperand('bf16', 1 / 3)).toBe(0.333984375);
    expect(roundOperand('bf16', 1 + 2 ** -8)).toBe(1);
    expect(roundOperand('bf16', 1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);
    expect(roundOperand('tf32', 1 / 3)).toBe(0.333251953125);
    expect(roundOperand('tf32', 2 ** 100 * (1 + 3 * 2 ** -11))).toBe(2 ** 100 * (1 + 2 ** -9)); // fp32's exponent range
    expect(roundOperand('fp32', 0.1)).toBe(Math.fround(0.1));
  });
  it('rejects unknown modes with the list', () => {
    expect(() => parsePrecision('fp8')).toThrow(/choose one of: fp32, tf32, bf16, f16/);
  });
});

describe('emulated modes', () => {
  // guards the reduced-precision conformance runs against an emulation that rounds nothing
  it('moves gpt2-tiny logits beyond the fp32 tolerance but within the mode tolerance', async () => {
    const f = loadFixture('gpt2-tiny');
    const want = f.ref.float32('logits');
    const [B, T] = f.ref.tensors.get('inputs')!.shape;
    for (const p of ['tf32', 'bf16', 'f16'] as const) {
      const m = new GPT2(createReferenceBackend({ precision: p }), f.config, f.params);
      await m.forward(f.ref.int32('inputs'), B, T);
      const got = await m.logits();
      let err = 0;
      for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
      expect(err, p).toBeGreaterThan(TOLERANCES.fp32.logits);
      expect(err, p).toBeLessThan(TOLERANCES[p].logits);
    }
  });
});
