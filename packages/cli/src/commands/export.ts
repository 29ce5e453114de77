// gpt2 export: a model as the folder transformers.js and ONNX Runtime load (config.json,
// generation_config.json, tokenizer.json, tokenizer_config.json, onnx/model.onnx and, with
// --quantize q8, onnx/model_quantized.onnx), or as the GGUF file llama.cpp loads (--format gguf,
// F32 or --quantize q8_0), written aside and renamed into place.
import { existsSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { ggufFile, ggufHeader, ggufTensors, GPT2Error, transformersJsFiles, type GgufQuant } from '@gpt2/core';
import { modelTensorReader, readModel, readParams } from '../model-source.js';
import { Reporter } from '../report.js';
import { byteSize, checkOutDir, SaveError, writeDirAside, writeFileAside } from '../run-dir.js';

export interface ExportFlags {
  model: string;
  format: 'onnx' | 'gguf';
  out: string;
  quantize?: 'q8' | 'q8_0';
  force?: boolean;
  json?: boolean;
}

const saveFailed = (err: unknown) => (err instanceof SaveError ? new GPT2Error(`${err.message}; nothing was written: free some space or choose another --out.`) : err);

/** The GGUF file llama.cpp's gpt2 architecture loads, streamed a tensor at a time. */
async function exportGguf(f: ExportFlags): Promise<void> {
  if (f.quantize === 'q8') throw new GPT2Error("GGUF's int8 type is --quantize q8_0 (q8 is the ONNX export's).");
  if (existsSync(f.out) && statSync(f.out).isDirectory()) throw new GPT2Error(`${f.out} is a folder; --out names the .gguf file to write.`);
  if (existsSync(f.out) && !f.force) throw new GPT2Error(`${f.out} exists; choose another --out, or pass --force to replace it.`);
  const report = new Reporter(Boolean(f.json));
  const read = await readModel(f.model, report), quant: GgufQuant = f.quantize ?? 'f32';
  const name = basename(read.dir ?? f.model), tensors = ggufTensors(read.config, quant);
  const last = tensors[tensors.length - 1], size = ggufHeader(read.config, read.tokenizer, quant, name, tensors).length + last.offset + last.bytes;
  report.line(`exporting ${f.model} to GGUF (${quant.toUpperCase()}, ${(size / 1e6).toFixed(1)} MB)`);
  try {
    await writeFileAside(f.out, { size, chunks: () => ggufFile(read.config, read.tokenizer, quant, name, modelTensorReader(read)) });
  } catch (err) {
    throw saveFailed(err);
  }
  if (f.json) process.stdout.write(JSON.stringify({ out: f.out, bytes: size, quantize: quant }) + '\n');
  else process.stdout.write(`wrote ${f.out}: run it with llama.cpp, e.g. llama-cli -m ${f.out} -p "Hello"\n`);
}

export async function runExport(f: ExportFlags): Promise<void> {
  if (f.format === 'gguf') return exportGguf(f);
  if (f.quantize === 'q8_0') throw new GPT2Error("--quantize q8_0 is GGUF's (--format gguf); the ONNX export's int8 is --quantize q8.");
  checkOutDir(f.out, f.force);
  const report = new Reporter(Boolean(f.json));
  const read = await readModel(f.model, report);
  const { config, tokenizer } = read, params = await readParams(read);
  report.line(`exporting ${f.model} (${params.length.toLocaleString('en')} parameters) to ONNX${f.quantize ? ' (fp32 and q8)' : ''}`);
  const files = transformersJsFiles(config, params, tokenizer, { quantize: f.quantize });
  try {
    await writeDirAside(f.out, files);
  } catch (err) {
    throw saveFailed(err);
  }
  const sizes = Object.fromEntries(Object.entries(files).map(([name, d]) => [name, byteSize(d)]));
  if (f.json) {
    process.stdout.write(JSON.stringify({ out: f.out, files: sizes }) + '\n');
    return;
  }
  const size = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`);
  for (const [name, bytes] of Object.entries(sizes).sort()) process.stdout.write(`${size(bytes).padStart(10)}  ${name}\n`);
  process.stdout.write(`wrote ${f.out}: load it with transformers.js, e.g. pipeline('text-generation', '${f.out}', { local_files_only: true${f.quantize ? ", dtype: 'q8'" : ''} })\n`);
}
