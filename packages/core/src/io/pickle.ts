// A restricted unpickler for PyTorch state dicts (pytorch_model.bin's data.pkl). Pickle is a
// program for a stack machine whose GLOBAL and REDUCE opcodes call any Python function: loading an
// untrusted .bin with pickle.load runs whatever it names (the reason safetensors exists). This
// reader never calls anything: it knows the opcodes a state dict uses (protocols 2 to 4) and the
// few globals torch.save writes for one (tensor rebuilds, storage types, OrderedDict), builds
// plain values for those, and refuses any other opcode or global before going further, as
// torch.load(weights_only=True) does.
import { GPT2Error } from '../errors.js';

/** A storage a tensor points into: torch's persistent id ('storage', type, key, location, numel). */
export interface PickledStorage {
  kind: 'storage';
  dtype: string; // safetensors' name: F32, F16, BF16, ...
  key: string; // the zip entry data/<key>
  numel: number;
}

/** What torch._utils._rebuild_tensor_v2 would make: a view of a storage. */
export interface PickledTensor {
  kind: 'tensor';
  storage: PickledStorage;
  offset: number; // in elements
  shape: number[];
  stride: number[];
}

/** The storage types a state dict holds, by their torch names, and the dtype of each. */
export const STORAGE_TYPES: Record<string, string> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};

type Value = unknown;
class Global {
  constructor(readonly name: string) {}
}
class Mark {}
const MARK = new Mark();

const ALLOWED = new Set([
  'collections.OrderedDict', 'torch._utils._rebuild_tensor_v2', 'torch._utils._rebuild_tensor', 'torch._utils._rebuild_parameter',
  ...Object.keys(STORAGE_TYPES).map((s) => `torch.${s}`),
]);

/** Unpickles a state dict: a Map of names to tensors (and plain values), calling nothing. */
export function unpickleStateDict(data: Uint8Array, source: string): Map<string, Value> {
  const refuse = (what: string): never => {
    throw new GPT2Error(`${source} ${what}, which a PyTorch state dict never does; it was not loaded (it could run code on this machine). Use the model's model.safetensors, or convert the .bin where running its code is safe.`);
  };
  const bad = (what: string): never => {
    throw new GPT2Error(`${source} is not a readable PyTorch state dict (${what}); re-download it or use model.safetensors.`);
  };
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const text = (a: number, b: number) => new TextDecoder().decode(data.subarray(a, b));
  const stack: Value[] = [];
  const memo = new Map<number, Value>();
  let p = 0;
  const need = (n: number) => {
    if (p + n > data.length) bad('the pickle ends early');
  };
  const u8 = () => (need(1), data[p++]);
  const u16 = () => (need(2), (p += 2), dv.getUint16(p - 2, true));
  const u32 = () => (need(4), (p += 4), dv.getUint32(p - 4, true));
  const line = () => {
    const end = data.indexOf(10, p);
    if (end < 0) bad('a GLOBAL without its newline');
    const s = text(p, end);
    p = end + 1;
    return s;
  };
  const pop = () => (stack.length ? stack.pop() : bad('the stack runs empty'));
  const popMark = (): Value[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) bad('no MARK');
    const items = stack.slice(i + 1);
    stack.length = i;
    return items;
  };
  const global = (name: string) => (ALLOWED.has(name) ? new Global(name) : refuse(`names the Python global ${name}`));
  const setItems = (target: Value, items: Value[]) => {
    if (!(target instanceof Map)) bad('SETITEMS on something not a dict');
    for (let i = 0; i + 1 < items.length; i += 2) (target as Map<Value, Value>).set(items[i], items[i + 1]);
  };
  const call = (f: Value, args: Value): Value => {
    if (!(f instanceof Global) || !Array.isArray(args)) return refuse('calls something other than a tensor rebuild');
    switch (f.name) {
      case 'collections.OrderedDict':
        return new Map();
      case 'torch._utils._rebuild_tensor_v2':
      case 'torch._utils._rebuild_tensor': {
        const [storage, offset, shape, stride] = args as [PickledStorage, number, number[], number[]];
        if ((storage as PickledStorage)?.kind !== 'storage' || !Array.isArray(shape) || !Array.isArray(stride)) bad('a tensor without its storage, shape or strides');
        return { kind: 'tensor', storage, offset: Number(offset), shape: shape.map(Number), stride: stride.map(Number) } satisfies PickledTensor;
      }
      case 'torch._utils._rebuild_parameter':
        return args[0]; // (data, requires_grad, backward_hooks): the tensor
      default:
        return refuse(`calls ${f.name}`);
    }
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: need(8); p += 8; break; // FRAME: a length prefix, nothing to do
      case 0x2e: { // STOP
        const top = pop();
        if (!(top instanceof Map)) bad('its top object is not a dict');
        return top as Map<string, Value>;
      }
      case 0x28: stack.push(MARK); break; // MARK
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x85: stack.push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(), a = pop(); stack.push([a, b]); break; } // TUPLE2
      case 0x87: { const c = pop(), b = pop(), a = pop(); stack.push([a, b, c]); break; } // TUPLE3
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x4a: stack.push((u32() | 0)); break; // BININT
      case 0x8a: { // LONG1: little-endian two's complement of n bytes
        const n = u8();
        need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[p + i]);
        if (n && data[p + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        p += n;
        stack.push(Number(v));
        break;
      }
      case 0x47: need(8); stack.push(dv.getFloat64(p, false)); p += 8; break; // BINFLOAT
      case 0x58: { const n = u32(); need(n); stack.push(text(p, p + n)); p += n; break; } // BINUNICODE
      case 0x8c: { const n = u8(); need(n); stack.push(text(p, p + n)); p += n; break; } // SHORT_BINUNICODE
      case 0x55: { const n = u8(); need(n); stack.push(text(p, p + n)); p += n; break; } // SHORT_BINSTRING
      case 0x54: { const n = u32(); need(n); stack.push(text(p, p + n)); p += n; break; } // BINSTRING
      case 0x71: memo.set(u8(), stack.at(-1)); break; // BINPUT
      case 0x72: memo.set(u32(), stack.at(-1)); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, stack.at(-1)); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) bad(`memo ${k} is read before it is written`);
        stack.push(memo.get(k));
        break;
      }
      case 0x63: { const mod = line(), name = line(); stack.push(global(`${mod}.${name}`)); break; } // GLOBAL
      case 0x93: { const name = pop(), mod = pop(); stack.push(global(`${String(mod)}.${String(name)}`)); break; } // STACK_GLOBAL
      case 0x52: { const args = pop(), f = pop(); stack.push(call(f, args)); break; } // REDUCE
      case 0x51: { // BINPERSID: torch's storage reference
        const id = pop() as Value[];
        if (!Array.isArray(id) || id[0] !== 'storage' || !(id[1] instanceof Global)) bad('a persistent id that is not a storage');
        const type = (id[1] as Global).name.replace(/^torch\./, '');
        if (!(type in STORAGE_TYPES)) refuse(`uses the storage type ${type}`);
        stack.push({ kind: 'storage', dtype: STORAGE_TYPES[type], key: String(id[2]), numel: Number(id[4]) } satisfies PickledStorage);
        break;
      }
      case 0x73: { const v = pop(), k = pop(); setItems(stack.at(-1), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(stack.at(-1), items); break; } // SETITEMS
      case 0x61: { const v = pop(), l = stack.at(-1); if (!Array.isArray(l)) bad('APPEND to a non-list'); (l as Value[]).push(v); break; } // APPEND
      case 0x65: { const items = popMark(), l = stack.at(-1); if (!Array.isArray(l)) bad('APPENDS to a non-list'); (l as Value[]).push(...items); break; } // APPENDS
      case 0x62: pop(); break; // BUILD: the state of an OrderedDict (its _metadata attribute) is not needed
      default:
        refuse(`uses the pickle opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}
