// pytorch_model.bin as torch.save writes it since PyTorch 1.6: a zip (stored, not compressed)
// holding ARCHIVE/data.pkl, the pickled state dict, and ARCHIVE/data/KEY, one file per storage.
// The zip's directory is read with zip.js; the pickle with our restricted unpickler (pickle.ts),
// which calls nothing; each tensor's bytes are then read straight from its storage's entry, one
// tensor at a time, as for safetensors. The pre-1.6 format (a bare pickle stream) is refused.
import { Reader, ZipReader, type Entry } from '@zip.js/zip.js';
import { GPT2Error } from '../errors.js';
import { DTYPE_BYTES } from './safetensors.js';
import { unpickleStateDict, type PickledTensor } from './pickle.js';
import { decodeFloat32, type ByteSource, type StoredTensor, type TensorStore } from './tensor-store.js';

class SourceReader extends Reader<ByteSource> {
  constructor(private readonly src: ByteSource) {
    super(src);
    this.size = src.size;
  }
  override readUint8Array(index: number, length: number): Promise<Uint8Array> {
    return this.src.read(index, Math.min(length, this.src.size - index));
  }
}

const isZip = async (src: ByteSource) => src.size >= 4 && (await src.read(0, 4)).every((b, i) => b === [0x50, 0x4b, 0x03, 0x04][i]);

/** Opens a pytorch_model.bin: its directory and its pickle are read and checked; no tensor data yet. */
export async function openTorchBin(src: ByteSource): Promise<TensorStore> {
  const bad = (what: string): never => {
    throw new GPT2Error(`${src.name} is not a readable PyTorch checkpoint: ${what}; re-download it, or use model.safetensors.`);
  };
  if (!(await isZip(src))) {
    throw new GPT2Error(`${src.name} is not a zip archive: it is a PyTorch file from before 1.6 (or not a PyTorch file); re-save it with a current torch.save, or use model.safetensors.`);
  }
  let entries: Entry[];
  try {
    entries = await new ZipReader(new SourceReader(src), { useWebWorkers: false }).getEntries();
  } catch (err) {
    return bad(`its zip directory cannot be read (${(err as Error).message})`);
  }
  const pkl = entries.find((e) => /^[^/]+\/data\.pkl$/.test(e.filename)) ?? bad('it has no data.pkl');
  const archive = pkl.filename.slice(0, -'data.pkl'.length);
  const byName = new Map(entries.map((e) => [e.filename, e]));

  /** Where an entry's bytes start: after its local header (whose name and extra lengths may differ from the directory's). */
  const dataStart = async (e: Entry): Promise<number> => {
    if (e.compressionMethod !== 0) bad(`${e.filename} is compressed, where torch.save stores its data plainly`);
    const h = await src.read(e.offset, 30);
    const dv = new DataView(h.buffer, h.byteOffset, 30);
    if (dv.getUint32(0, true) !== 0x04034b50) bad(`${e.filename}'s local header is damaged`);
    return e.offset + 30 + dv.getUint16(26, true) + dv.getUint16(28, true);
  };
  const readEntry = async (e: Entry) => src.read(await dataStart(e), e.uncompressedSize);

  const dict = unpickleStateDict(await readEntry(pkl), `${src.name}'s pickle`);
  const tensors = new Map<string, StoredTensor & { t: PickledTensor; entry: Entry }>();
  for (const [name, v] of dict) {
    const t = v as PickledTensor;
    if (typeof name !== 'string' || t?.kind !== 'tensor') bad(`'${String(name)}' is not a tensor`);
    const entry = byName.get(`${archive}data/${t.storage.key}`) ?? bad(`the storage of '${name}' (data/${t.storage.key}) is missing`);
    const size = DTYPE_BYTES[t.storage.dtype];
    if (entry.uncompressedSize !== t.storage.numel * size) bad(`data/${t.storage.key} holds ${entry.uncompressedSize} bytes where its ${t.storage.numel} elements need ${t.storage.numel * size}`);
    // a state dict's tensors are contiguous views of their storage
    let expect = 1;
    for (let i = t.shape.length - 1; i >= 0; i--) {
      if (t.shape[i] !== 1 && t.stride[i] !== expect) bad(`'${name}' is not contiguous (strides ${JSON.stringify(t.stride)})`);
      expect *= t.shape[i];
    }
    if (t.offset < 0 || t.offset + expect > t.storage.numel) bad(`'${name}' reaches past the end of its storage`);
    tensors.set(name, { dtype: t.storage.dtype, shape: t.shape, t, entry });
  }
  const starts = new Map<Entry, Promise<number>>();
  return {
    source: src.name,
    tensors,
    sameData: (a, b) => {
      const x = tensors.get(a)?.t, y = tensors.get(b)?.t;
      return !!x && !!y && x.storage.key === y.storage.key && x.offset === y.offset && x.shape.join() === y.shape.join();
    },
    async float32(name, range, into) {
      const e = tensors.get(name) ?? bad(`it has no tensor '${name}'`);
      const size = DTYPE_BYTES[e.dtype], count = e.shape.reduce((a, d) => a * d, 1);
      const [start, n] = range ?? [0, count];
      if (!starts.has(e.entry)) starts.set(e.entry, dataStart(e.entry));
      const at = (await starts.get(e.entry)!) + (e.t.offset + start) * size;
      return decodeFloat32(e, await src.read(at, n * size, into), `${src.name}: tensor '${name}'`);
    },
  };
}
