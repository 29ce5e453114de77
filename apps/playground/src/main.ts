// The playground page: wires the controls to the model worker. Everything a model or a user
// produces is shown with textContent, never as HTML.
import { LossChart } from './chart.js';
import { baseUrl, cachedModels, fromFiles, fromUrl } from './model-store.js';
import type { LoraTarget, WeightFormat } from '@gpt2/core';
import type { BackendChoice, FromWorker, ModelFiles, ToWorker } from './protocol.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const num = (id: string) => Number($<HTMLInputElement>(id).value);

const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
const send = (m: ToWorker, transfer: Transferable[] = []) => worker.postMessage(m, transfer);
const chart = new LossChart($<HTMLCanvasElement>('chart'));

function message(text: string, kind: 'error' | 'warning' | 'info' = 'info'): void {
  const p = document.createElement('p');
  p.className = kind;
  p.textContent = text;
  $('messages').replaceChildren(p);
}

function setBusy(busy: boolean): void {
  for (const id of ['load', 'run', 'train']) $<HTMLButtonElement>(id).disabled = busy;
}

// ---- model ----
async function load(files: Promise<ModelFiles>): Promise<void> {
  setBusy(true);
  try {
    const f = await files;
    $('progress-label').textContent = 'starting the model…';
    const weights = $<HTMLSelectElement>('weights-choice').value as WeightFormat;
    send({ type: 'load', files: f, backend: $<HTMLSelectElement>('backend-choice').value as BackendChoice, weights }, [f.config, f.model, f.vocab, f.merges]);
  } catch (err) {
    setBusy(false);
    message((err as Error).message, 'error');
  }
}

function progress(fraction: number, label: string): void {
  const bar = $<HTMLProgressElement>('progress');
  bar.hidden = false;
  bar.value = fraction;
  $('progress-label').textContent = label;
}

$('load').onclick = () => {
  let base: string;
  try {
    base = baseUrl($<HTMLInputElement>('source').value, $<HTMLInputElement>('endpoint').value);
  } catch (err) {
    return message((err as Error).message, 'error');
  }
  void load(fromUrl(base, progress, (note) => message(note, 'warning')));
};
$<HTMLInputElement>('files').onchange = (e) => void load(fromFiles((e.target as HTMLInputElement).files!));
const drop = $('drop');
drop.ondragover = (e) => {
  e.preventDefault();
  drop.classList.add('over');
};
drop.ondragleave = () => drop.classList.remove('over');
drop.ondrop = (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  void load(fromFiles(e.dataTransfer!.files));
};

async function showCached(): Promise<void> {
  const bases = await cachedModels();
  const box = $('cached');
  box.replaceChildren();
  if (bases.length === 0) return;
  box.append('Cached in this browser: ');
  for (const b of bases) {
    const a = document.createElement('button');
    a.textContent = b.replace(/\/resolve\/[^/]+\/$/, '').replace(/^https?:\/\/[^/]+\//, '');
    a.title = b;
    a.onclick = () => void load(fromUrl(b, progress, (note) => message(note, 'warning')));
    box.append(a, ' ');
  }
}

// ---- generate ----
let outputs: HTMLElement[] = [];
const tokenIds: number[][] = [];
$('run').onclick = () => {
  const n = num('nsamples');
  const prompt = $<HTMLTextAreaElement>('prompt').value;
  outputs = Array.from({ length: n }, () => {
    const pre = document.createElement('div');
    pre.className = 'output';
    const p = document.createElement('span');
    p.className = 'prompt';
    p.textContent = prompt;
    pre.append(p, document.createElement('span'));
    return pre;
  });
  tokenIds.length = 0;
  $('outputs').replaceChildren(...outputs);
  $('outputs').removeAttribute('data-tokens');
  const stop = $<HTMLInputElement>('stop').value;
  send({
    type: 'generate',
    prompt,
    options: {
      maxNewTokens: num('max-new-tokens'), temperature: num('temperature'), topK: num('top-k'), topP: num('top-p'), minP: num('min-p'),
      repetitionPenalty: num('repetition-penalty'), noRepeatNgramSize: num('no-repeat-ngram'), minNewTokens: num('min-new-tokens'),
      nsamples: n, seed: num('seed'), stop: stop ? [stop] : [], stopAtEos: true,
    },
  });
  setBusy(true);
  $<HTMLButtonElement>('stop-gen').disabled = false;
  $('tps').textContent = '';
};
$('stop-gen').onclick = () => send({ type: 'stop' });

// ---- fine-tune ----
const trainText = $<HTMLTextAreaElement>('train-text');
trainText.ondragover = (e) => e.preventDefault();
trainText.ondrop = async (e) => {
  e.preventDefault();
  const file = e.dataTransfer?.files[0];
  if (!file) return;
  try {
    trainText.value = new TextDecoder('utf-8', { fatal: true }).decode(await file.arrayBuffer());
  } catch {
    message(`${file.name} is not UTF-8 text.`, 'error');
  }
};
$('train').onclick = () => {
  chart.reset();
  $('chart').dataset.losses = '[]';
  $('samples').replaceChildren();
  $('chart').dataset.evals = '[]';
  $('val-status').textContent = '';
  send({
    type: 'finetune', text: trainText.value, steps: num('steps'), batchSize: num('batch'), blockSize: num('block'), lr: num('lr'), sampleEvery: num('sample-every'),
    valSplit: num('holdout') / 100, evalEvery: Math.max(1, num('eval-every')),
    lora: $<HTMLInputElement>('lora').checked
      ? { r: num('lora-r'), targets: Array.from(document.querySelectorAll<HTMLInputElement>('.lora-target:checked'), (c) => c.value as LoraTarget) }
      : undefined,
  });
  setBusy(true);
  $<HTMLButtonElement>('stop-train').disabled = false;
  $('train-status').textContent = 'training…';
};
$('stop-train').onclick = () => send({ type: 'stop' });
$('download').onclick = () => send({ type: 'export', format: 'hf' });
$('download-onnx').onclick = () => send({ type: 'export', format: 'transformers.js' });
$('download-adapter').onclick = () => send({ type: 'export', format: 'adapter' });

// ---- worker events ----
worker.onmessage = (e: MessageEvent<FromWorker>) => {
  const m = e.data;
  switch (m.type) {
    case 'backend':
      $('backend').textContent = `backend: ${m.name} (${m.why}) · ${Object.entries(m.details).map(([k, v]) => `${k}: ${v}`).join(', ')}`;
      $('backend').dataset.backend = m.name;
      break;
    case 'loaded':
      setBusy(false);
      $('progress-label').textContent = 'ready';
      $('model-info').textContent = `${m.params.toLocaleString('en-US')} parameters · ${m.layers} layers · context ${m.context} · vocabulary ${m.vocab}${m.weights === 'int8' ? ' · int8 weights (generation only)' : ''}`;
      $<HTMLButtonElement>('download').disabled = m.weights === 'int8';
      $<HTMLButtonElement>('download-onnx').disabled = m.weights === 'int8';
      $<HTMLButtonElement>('download-adapter').disabled = true;
      $('lora-status').textContent = '';
      void showCached();
      break;
    case 'text': {
      const out = outputs[m.sample]?.lastChild;
      if (out) out.textContent += m.text;
      if (m.tokens) tokenIds[m.sample] = m.tokens;
      break;
    }
    case 'generated':
      setBusy(false);
      $<HTMLButtonElement>('stop-gen').disabled = true;
      $('tps').textContent = `${m.tokensPerSecond.toFixed(1)} tokens/s${m.stopped ? ' (stopped)' : ''}`;
      $('outputs').dataset.tokens = JSON.stringify(tokenIds);
      break;
    case 'loss':
      chart.add(m.step, m.loss);
      $('train-status').textContent = `step ${m.step}: loss ${m.loss.toFixed(4)} · ${m.tokensPerSecond.toFixed(0)} tokens/s`;
      $('chart').dataset.losses = JSON.stringify([...JSON.parse($('chart').dataset.losses ?? '[]'), m.loss]);
      break;
    case 'eval':
      chart.addEval(m.step, m.loss, m.accuracy);
      $('chart').dataset.evals = JSON.stringify([...JSON.parse($('chart').dataset.evals ?? '[]'), { step: m.step, loss: m.loss, accuracy: m.accuracy }]);
      $('val-status').textContent = `step ${m.step}: validation loss ${m.loss.toFixed(4)} · accuracy ${(100 * m.accuracy).toFixed(1)}%`;
      break;
    case 'sample': {
      const d = document.createElement('div');
      d.className = 'output';
      d.textContent = `step ${m.step}: ${m.text}`;
      $('samples').prepend(d);
      break;
    }
    case 'adapters':
      $('lora-status').textContent = m.r === null
        ? 'training all weights (adapters merged in)'
        : `LoRA r=${m.r}: ${m.trained.toLocaleString('en-US')} of ${m.total.toLocaleString('en-US')} parameters trained`;
      break;
    case 'trained':
      $<HTMLButtonElement>('download-adapter').disabled = !m.lora;
      setBusy(false);
      $<HTMLButtonElement>('stop-train').disabled = true;
      $('train-status').textContent += m.stopped ? ' (stopped)' : ' (done)';
      break;
    case 'exported': {
      const a = document.createElement('a');
      a.href = URL.createObjectURL(new Blob([m.zip], { type: 'application/zip' }));
      a.download = { hf: 'gpt2-finetuned.zip', 'transformers.js': 'gpt2-finetuned-transformers.js.zip', adapter: 'gpt2-lora-adapter.zip' }[m.format];
      a.click();
      break;
    }
    case 'warning':
      message(m.message, 'warning');
      break;
    case 'error':
      setBusy(false);
      $<HTMLButtonElement>('stop-gen').disabled = true;
      $<HTMLButtonElement>('stop-train').disabled = true;
      message(m.message, 'error');
      break;
  }
};
worker.onerror = (e) => message(`The model worker failed: ${e.message}`, 'error');
$('chart').dataset.losses = '[]';
void showCached();
if (!crossOriginIsolated) message('This page is not cross-origin isolated, so WebAssembly runs on one thread.', 'warning');
