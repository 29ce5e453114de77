// gpt2 serve: an OpenAI-compatible completions server (@gpt2/server) for a model, with continuous
// batching over --slots sequences. It listens at once (/health answers 503 while the model loads),
// and SIGTERM or Ctrl-C stops it gracefully: no new requests, those in flight finish (cancelled
// after --grace seconds), exit 0.
import type { AddressInfo } from 'node:net';
import { generationMemory, GPT2, GPT2Error, paramLayout } from '@gpt2/core';
import { gpt2Tokenizer } from '@gpt2/core/node';
import { createServer } from '@gpt2/server';
import { openBackend } from '../backends.js';
import { checkMemory, initConfig, instantiate, readModel, weightFormat, type ModelFlags } from '../model-source.js';
import { Reporter } from '../report.js';

export interface ServeFlags extends ModelFlags {
  host: string;
  port: number;
  slots: number;
  maxQueue: number;
  apiKey?: string;
  maxBody: number;
  grace: number;
  modelName?: string;
  /** A randomly initialised model of this shape (gpt2 bench --task serve). */
  init?: string;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export async function runServe(f: ServeFlags): Promise<void> {
  const report = new Reporter(false);
  const apiKey = f.apiKey ?? (process.env.GPT2_API_KEY || undefined);
  const weights = weightFormat(f);
  const modelId = f.modelName ?? f.model ?? f.adapter ?? f.init ?? 'gpt2';
  if (!LOOPBACK.has(f.host) && !apiKey) {
    report.warn(`listening on ${f.host} without --api-key: anyone who can reach this address can use the model; pass --api-key (or set GPT2_API_KEY).`);
  }
  const server = createServer({ modelId, slots: f.slots, maxQueue: f.maxQueue, apiKey, bodyLimit: f.maxBody });
  try {
    await server.app.listen({ host: f.host, port: f.port });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new GPT2Error(`Port ${f.port} on ${f.host} is in use; stop what holds it or pass another --port.`);
    if (code === 'EADDRNOTAVAIL') throw new GPT2Error(`${f.host} is not an address of this machine; pass one of its addresses to --host (127.0.0.1 by default).`);
    if (code === 'EACCES') throw new GPT2Error(`Port ${f.port} needs privileges to bind; pass a port above 1023.`);
    throw err;
  }
  const a = server.app.server.address() as AddressInfo;
  const address = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  report.line(`listening on ${address} (loading ${modelId}; /health answers 503 until it is ready)`);

  let stopping: Promise<void> | undefined;
  const stop = (signal: string) => {
    if (stopping) return;
    report.line(`${signal}: no new requests; finishing those in flight (up to ${f.grace} s)`);
    stopping = server.close(f.grace * 1000);
  };
  const onSignal = (s: NodeJS.Signals) => stop(s);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const read = f.init ? undefined : await readModel(f.model, report, f.adapter);
    const config = read?.config ?? initConfig(f.init!);
    const { backend } = await openBackend(f);
    const plan = generationMemory(config, f.slots, config.nPositions, weights, backend.bf16Copies);
    checkMemory(backend, config, plan, `Serving this ${paramLayout(config).count.toLocaleString('en')}-parameter model with ${f.slots} slots`, 'lower --slots, load it with --quantize int8, or use a smaller model', weights);
    const { model, tokenizer } = read
      ? await instantiate(backend, read, weights)
      : { model: new GPT2(backend, config, GPT2.initParams(config, 1), { weights }), tokenizer: await gpt2Tokenizer() };
    if (stopping) return await stopping;
    server.attach(model, tokenizer);
    report.line(`ready: ${modelId} on ${backend.name}${weights === 'int8' ? ' with int8 weights' : ''}, ${f.slots} slots, context ${config.nPositions}; POST ${address}/v1/completions`);
    await new Promise<void>((resolve) => {
      const wait = setInterval(() => {
        if (stopping) {
          clearInterval(wait);
          stopping.then(resolve, resolve);
        }
      }, 100);
    });
    report.line('stopped');
  } catch (err) {
    await server.close(0);
    throw err;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
