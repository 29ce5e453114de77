// gpt2 export: a model as the folder transformers.js and ONNX Runtime load (config.json,
// generation_config.json, tokenizer.json, tokenizer_config.json, onnx/model.onnx and, with
// --quantize q8, onnx/model_quantized.onnx), written aside and renamed into place.
import { GPT2Error, transformersJsFiles } from '@gpt2/core';
import { readModel, readParams } from '../model-source.js';
import { Reporter } from '../report.js';
import { byteSize, checkOutDir, SaveError, writeDirAside } from '../run-dir.js';

export interface ExportFlags {
  model: string;
  format: 'onnx';
  out: string;
  quantize?: 'q8';
  force?: boolean;
  json?: boolean;
}

export async function runExport(f: ExportFlags): Promise<void> {
  checkOutDir(f.out, f.force);
  const report = new Reporter(Boolean(f.json));
  const read = await readModel(f.model, report);
  const { config, tokenizer } = read, params = await readParams(read);
  report.line(`exporting ${f.model} (${params.length.toLocaleString('en')} parameters) to ONNX${f.quantize ? ' (fp32 and q8)' : ''}`);
  const files = transformersJsFiles(config, params, tokenizer, { quantize: f.quantize });
  try {
    await writeDirAside(f.out, files);
  } catch (err) {
    if (err instanceof SaveError) throw new GPT2Error(`${err.message}; nothing was written: free some space or choose another --out.`);
    throw err;
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
