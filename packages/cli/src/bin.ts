#!/usr/bin/env node
import { isMainThread, parentPort, workerData } from 'node:worker_threads';

// gpt2 prepare's tokenizing threads run this same file (the release bundles the CLI into one)
if (!isMainThread && workerData?.gpt2 === 'prepare') await (await import('./commands/prepare.js')).prepareWorker(workerData, parentPort!);
else process.exitCode = await (await import('./main.js')).main(process.argv);
