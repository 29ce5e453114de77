// HF GPT-2 checkpoints <-> our flat parameter buffer (PARAM_SPECS layout).
// HF stores Conv1D weights as [IN, OUT]; we keep [OUT, IN], so they are transposed both ways.
import { GPT2Error } from '../errors.js';
import type { GPT2Config } from '../model/config.js';
import { hfTensors, paramLayout } from '../model/params.js';
import { serializeSafetensors, type SafeTensors, type TensorToWrite } from './safetensors.js';

const PREFIX = 'transformer.';
// causal-mask buffers older transformers versions saved; not parameters
const IGNORED = /^h\.\d+\.attn\.(bias|masked_bias)$/;

/** Copies every GPT-2 tensor of a checkpoint into a new flat float32 buffer, checking names and shapes against the config. */
export function paramsFromSafetensors(cfg: GPT2Config, st: SafeTensors): Float32Array {
  const { tensors, total } = paramLayout(cfg);
  // strip the optional prefix; keep a map from our HF name to the stored name
  const stored = new Map<string, string>();
  for (const name of st.tensors.keys()) stored.set(name.startsWith(PREFIX) ? name.slice(PREFIX.length) : name, name);
  // every name and shape checked against the header before the buffer the config sizes is allocated
  const copies: { hfName: string; name: string; offset: number; conv1d: boolean; hfShape: number[] }[] = [];
  for (const p of Object.values(tensors)) {
    const shape = p.spec.shape(cfg);
    const hfShape = p.spec.conv1d ? [shape[1], shape[0]] : shape;
    for (const { hfName, offset } of hfTensors(cfg, p)) {
      const name = stored.get(hfName);
      if (name === undefined) throw new GPT2Error(`${st.source} has no tensor '${hfName}'; the checkpoint is incomplete or not a GPT-2 model.`);
      const got = st.tensors.get(name)!.shape;
      if (got.length !== hfShape.length || got.some((d, i) => d !== hfShape[i])) {
        throw new GPT2Error(
          `${st.source}: tensor '${name}' has shape [${got}] but config.json implies [${hfShape}]; the config does not match the weights.`,
        );
      }
      copies.push({ hfName, name, offset, conv1d: !!p.spec.conv1d, hfShape });
    }
  }
  const flat = new Float32Array(total);
  const used = new Set<string>();
  for (const { hfName, name, offset, conv1d, hfShape } of copies) {
    const data = st.float32(name);
    if (conv1d) transposeInto(flat, offset, data, hfShape[0], hfShape[1]);
    else flat.set(data, offset);
    used.add(hfName);
  }
  const lmHead = stored.get('lm_head.weight');
  if (lmHead !== undefined) {
    const w = st.float32(lmHead);
    const wte = flat.subarray(tensors.wte.offset, tensors.wte.offset + tensors.wte.perLayer);
    if (w.length !== wte.length || w.some((x, i) => x !== wte[i])) {
      throw new GPT2Error(`${st.source}: lm_head.weight differs from wte.weight; untied LM heads are not supported.`);
    }
    used.add('lm_head.weight');
  }
  for (const [hfName, name] of stored) {
    if (!used.has(hfName) && !IGNORED.test(hfName)) {
      throw new GPT2Error(`${st.source} has an unexpected tensor '${name}'; it is not a plain GPT-2 checkpoint.`);
    }
  }
  return flat;
}

/** The tensors GPT2LMHeadModel.save_pretrained writes: `transformer.` prefix, Conv1D [IN, OUT], tied lm_head omitted. */
export function paramsToTensors(cfg: GPT2Config, flat: Float32Array): TensorToWrite[] {
  const { tensors, total } = paramLayout(cfg);
  if (flat.length !== total) throw new Error(`parameter buffer has ${flat.length} values, expected ${total}`);
  const out: TensorToWrite[] = [];
  for (const p of Object.values(tensors)) {
    const shape = p.spec.shape(cfg);
    for (const { hfName, offset } of hfTensors(cfg, p)) {
      const src = flat.subarray(offset, offset + p.perLayer);
      if (p.spec.conv1d) {
        const t = new Float32Array(p.perLayer);
        transposeInto(t, 0, src, shape[0], shape[1]);
        out.push({ name: PREFIX + hfName, shape: [shape[1], shape[0]], data: t });
      } else {
        out.push({ name: PREFIX + hfName, shape, data: src });
      }
    }
  }
  return out;
}

export function paramsToSafetensors(cfg: GPT2Config, flat: Float32Array): Uint8Array {
  return serializeSafetensors(paramsToTensors(cfg, flat));
}

// dst[offset + c*R + r] = src[r*Cn + c]: src (R, Cn) -> dst (Cn, R)
function transposeInto(dst: Float32Array, offset: number, src: Float32Array, R: number, Cn: number): void {
  for (let r = 0; r < R; r++) for (let c = 0; c < Cn; c++) dst[offset + c * R + r] = src[r * Cn + c];
}
