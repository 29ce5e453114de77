import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GPT2Error } from '../errors.js';
import { fixturesDir } from '../conformance/fixtures.js';
import { parseSafetensors, serializeSafetensors } from './safetensors.js';
import { f16ToF32 } from './tensor-store.js';

/** A file with an arbitrary header object and `dataBytes` zero bytes of data. */
function craft(header: unknown, dataBytes: number, headerLen?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, headerLen ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

const expectBad = (bytes: Uint8Array, pattern: RegExp) => {
  expect(() => parseSafetensors(bytes, 'bad.safetensors')).toThrowError(GPT2Error);
  expect(() => parseSafetensors(bytes, 'bad.safetensors')).toThrowError(pattern);
};

describe('safetensors: malformed files end in one clear error', () => {
  const real = readFileSync(`${fixturesDir()}/gpt2-odd/model.safetensors`);
  const realBytes = new Uint8Array(real.buffer, real.byteOffset, real.byteLength);

  it('a truncated file', () => {
    expectBad(realBytes.subarray(0, Math.floor(realBytes.length / 2)), /bad\.safetensors .*'h\.\d+\..*' ends at byte .*\(truncated\?\)/);
  });
  it('a file shorter than its length prefix', () => expectBad(realBytes.subarray(0, 5), /only 5 bytes/));
  it('a header cut short', () => expectBad(realBytes.subarray(0, 100), /header runs past the end/));
  it('offsets past the end', () => {
    expectBad(craft({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8), /'a' ends at byte 16 .* only 8 bytes/);
  });
  it('overlapping tensors', () => {
    const h = { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } };
    expectBad(craft(h, 16), /'a' and 'b' overlap/);
  });
  it('an unknown dtype', () => expectBad(craft({ a: { dtype: 'F8_XYZ', shape: [1], data_offsets: [0, 1] } }, 1), /'a' has unknown dtype "F8_XYZ"/));
  it('dtype x shape disagreeing with the byte length', () => {
    expectBad(craft({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, 16), /'a' is F32 \[3\] = 12 bytes, but its offsets span 16/);
  });
  it('an absurd header length', () => expectBad(craft({}, 0, 1n << 62n), /over the 100000000-byte limit/));
  it('a header that is not JSON', () => expectBad(craft('{"a": [', 0), /not valid UTF-8 JSON/));
  it('negative or fractional shapes', () => expectBad(craft({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, 0), /invalid shape/));
});

describe('safetensors: reading and writing', () => {
  it('round-trips F32 and I32 tensors with metadata', () => {
    const bytes = serializeSafetensors(
      [{ name: 'x', shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, -6.5) }, { name: 'ids', shape: [2], data: Int32Array.of(7, -1) }],
      { note: 'hi' },
    );
    expect(new DataView(bytes.buffer).getBigUint64(0, true) % 8n).toBe(0n); // header padded like the reference writer
    const st = parseSafetensors(bytes);
    expect([...st.float32('x')]).toEqual([1, 2, 3, 4, 5, -6.5]);
    expect([...st.int32('ids')]).toEqual([7, -1]);
    expect(st.metadata.note).toBe('hi');
    expect(st.tensors.get('x')!.shape).toEqual([2, 3]);
  });

  it('converts F16 and BF16 exactly', () => {
    // IEEE half: 0x3c00 = 1, 0xc000 = -2, 0x0001 = 2^-24 (subnormal), 0x7bff = 65504, 0x7c00 = inf
    expect([...f16ToF32(Uint16Array.of(0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00))]).toEqual([1, -2, 2 ** -24, 65504, Infinity]);
    const bytes = craft({ b: { dtype: 'BF16', shape: [2], data_offsets: [0, 4] } }, 4);
    const dataStart = bytes.length - 4;
    new DataView(bytes.buffer).setUint16(dataStart, 0x3f80, true); // bf16 1.0
    new DataView(bytes.buffer).setUint16(dataStart + 2, 0xc0a0, true); // bf16 -5.0
    expect([...parseSafetensors(bytes).float32('b')]).toEqual([1, -5]);
  });

  it('names the missing tensor', () => {
    expect(() => parseSafetensors(serializeSafetensors([]), 'x.safetensors').float32('nope')).toThrowError(/x\.safetensors has no tensor 'nope'/);
  });
});
