// The gpt2 command. Usage mistakes exit 2, other errors 1, each with one sentence (a stack
// trace only with --verbose); results go to stdout, progress and notes to stderr.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_MAX_SHARD_SIZE, GPT2Error, LORA_TARGETS, parseByteSize, PRECISIONS } from '@gpt2/core';
import { BACKEND_CHOICES } from './backends.js';
import { leaveJob } from './distributed.js';
import { runBench } from './commands/bench.js';
import { runDownload } from './commands/download.js';
import { runEval } from './commands/eval.js';
import { runExport } from './commands/export.js';
import { runGenerate } from './commands/generate.js';
import { runInfo } from './commands/info.js';
import { runMerge } from './commands/merge.js';
import { runServe } from './commands/serve.js';
import { runSelftestCommand } from './commands/selftest.js';
import { runTokenize } from './commands/tokenize.js';
import { runPrepare } from './commands/prepare.js';
import { runTraining, type TrainFlags } from './commands/train.js';
import { findCheckpoint } from './run-dir.js';

const int = (min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`must be a whole number >= ${min}.`);
  return n;
};
const num = (min: number, max = Infinity, openMin = false) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max || (openMin && n === min)) {
    throw new InvalidArgumentError(`must be a number ${openMin ? '>' : '>='} ${min}${max < Infinity ? ` and <= ${max}` : ''}.`);
  }
  return n;
};
const collect = (v: string, prev: string[]) => [...prev, v];
const zeroStage = (v: string) => {
  if (v !== '0' && v !== '1') throw new InvalidArgumentError('must be 0 (every rank holds all of AdamW\'s moments) or 1 (ZeRO-1: each holds its share).');
  return Number(v) as 0 | 1;
};
const byteSize = (v: string) => {
  try {
    parseByteSize(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return v;
};
const maxShardOption = () =>
  new Option('--max-shard-size <size>', `weights past this size are written as shards with model.safetensors.index.json, as save_pretrained does (e.g. 2GB, 500MB)`).argParser(byteSize).default(DEFAULT_MAX_SHARD_SIZE);
const intOrEpoch = (v: string) => (v === 'epoch' ? 'epoch' : int(0)(v));
const backendOption = () => new Option('--backend <name>', 'compute backend').choices(BACKEND_CHOICES).default('auto');
const threadsOption = () => new Option('--threads <n>', 'CPU threads for the cpu and wasm backends (default: all cores)').argParser(int(1));
const precisionOption = () =>
  new Option('--precision <mode>', 'matmul precision: tf32 or bf16 on cuda, bf16 on cpu (oneDNN), f16 on webgpu (README, "Precision")').choices(PRECISIONS).default('fp32');

const quantizeOption = () =>
  new Option('--quantize <kind>', 'int8: the linear layers\' weights as int8 with a scale per row, fp32 arithmetic (README, "int8 weights")').choices(['int8']);
const adapterOption = () => new Option('--adapter <dir>', 'a LoRA adapter (peft format, e.g. a LoRA fine-tune\'s model/) applied to --model');
const loraTargets = (v: string) => v.split(',').map((t) => t.trim()).filter(Boolean);
// training needs fp32 weights: --quantize on a training command says where it belongs
const noQuantize = () =>
  new Option('--quantize <kind>').hideHelp().argParser(() => {
    throw new InvalidArgumentError('int8 weights are for generate, eval and bench --task generate; training needs the fp32 weights (drop --quantize).');
  });
/** The model a sampling command runs and how: generate and serve. */
const modelOptions = (c: Command) => c
  .option('--model <dir|id>', 'local HF-format model directory or hub id (default gpt2, or the base an --adapter records)')
  .addOption(adapterOption())
  .addOption(backendOption())
  .addOption(threadsOption())
  .addOption(precisionOption())
  .addOption(quantizeOption());

function trainingOptions(cmd: Command, kind: 'finetune' | 'train'): Command {
  const ft = kind === 'finetune';
  return cmd
    .addOption(noQuantize())
    .addOption(backendOption())
    .addOption(threadsOption())
    .addOption(precisionOption())
    .option('--out <dir>', 'run directory for checkpoints, metrics and the loss curve (default runs/<command>-<time>)')
    .option('--resume <dir>', 'continue a run (its directory or one checkpoint) exactly where it stopped')
    .option('--overwrite', 'replace the run already in --out (its checkpoints, metrics and model), once the new model and data have loaded')
    .option('--steps <n>', 'optimizer steps (default 1000)', int(1))
    .option('--epochs <n>', 'passes over the training tokens, instead of --steps', num(0, Infinity, true))
    .option('--batch-size <n>', 'sequences per micro-batch', int(1), ft ? 1 : 8)
    .option('--block-size <n>', 'tokens per sequence (default min(1024, n_positions))', int(1))
    .option('--grad-accum <n>', 'micro-batches per optimizer step', int(1), 1)
    .option('--lr <x>', `peak learning rate${ft ? ' (5e-4 with --lora-r)' : ''}`, num(0, Infinity, true), ft ? 1e-4 : 6e-4)
    .option('--warmup <n>', 'linear warmup steps', int(0), ft ? 0 : 100)
    .addOption(new Option('--lr-schedule <kind>', 'after warmup').choices(['constant', 'linear', 'cosine']).default(ft ? 'constant' : 'cosine'))
    .option('--weight-decay <x>', 'AdamW weight decay (2+-dim tensors only)', num(0), ft ? 0 : 0.1)
    .option('--clip <x>', 'global gradient-norm clip (0 = off)', num(0), 1.0)
    .option('--seed <n>', 'seed for initialisation and batch order', int(0), 0)
    .addOption(new Option('--zero <stage>', 'under mpirun: 1 shards AdamW\'s moments across the ranks (ZeRO-1; README, "Training on many processes")').argParser(zeroStage))
    .option('--collective-timeout <seconds>', 'under mpirun: a rank that keeps the others waiting this long ends the job', num(1), 300)
    .option('--val-split <x>', 'fraction of the data held out for validation', num(0, 0.99), 0.05)
    .option('--val-data <file>', 'validation text instead of a split')
    .option('--eval-every <n|epoch>', 'validation loss and accuracy every n steps, or at the end of each epoch (0 = off)', intOrEpoch, 100)
    .option('--eval-batches <n>', 'validation batches per evaluation', int(1), 20)
    .addOption(new Option('--data-order <order>', "random: windows drawn anywhere (default); sequential: llm.c's pass over every window once an epoch, in a new order each epoch").choices(['random', 'sequential']).default('random'))
    .option('--eval-hellaswag <file>', "also score HellaSwag's .jsonl at each evaluation (acc and acc_norm, as gpt2 eval --task hellaswag)")
    .option('--hellaswag-limit <n>', 'with --eval-hellaswag: only the first n items', int(1))
    .option('--sample-every <n>', 'print a sample every n steps (0 = off)', int(0), 100)
    .option('--sample-prompt <text>', 'prompt for those samples', '')
    .option('--sample-length <n>', 'tokens per sample', int(1), 100)
    .option('--save-every <n|epoch>', 'checkpoint every n steps, or at the end of each epoch (0 = only at the end)', intOrEpoch, 500)
    .option('--early-stop <n>', 'stop after n evaluations in a row without a lower validation loss', int(1))
    .addOption(new Option('--final <which>', 'what model/ holds: the best evaluation\'s weights (best/) or the last (default best with validation, else last)').choices(['best', 'last']))
    .option('--keep <n>', 'checkpoints to keep', int(1), 3)
    .addOption(maxShardOption())
    .option('--text-field <name>', 'field of .jsonl / column of .csv holding the text', 'text')
    .option('--no-specials', 'read <|endoftext|> in the data as plain text, not a document boundary')
    .option('--log-every <n>', 'progress line every n steps when not on a terminal', int(1))
    .option('--json', 'print a JSON summary at the end');
}

/** On --resume, settings left at their defaults come from the run's run.json, so the run continues as it began. */
function withResumedOptions(cmd: Command, flags: TrainFlags): TrainFlags {
  if (!flags.resume) return flags;
  const ckpt = findCheckpoint(flags.resume);
  const runJson = [join(ckpt, '..', 'run.json'), join(flags.resume, 'run.json')].find((p) => existsSync(p));
  if (!runJson) return flags;
  const saved = (JSON.parse(readFileSync(runJson, 'utf8')) as { options: Record<string, unknown> }).options;
  const merged: Record<string, unknown> = { ...flags };
  for (const [key, value] of Object.entries(saved)) {
    if (['resume', 'out', 'json', 'backend', 'precision', 'overwrite'].includes(key)) continue;
    const source = cmd.getOptionValueSource(key);
    if (source === undefined || source === 'default') merged[key] = value;
  }
  return merged as unknown as TrainFlags;
}

export function buildProgram(): Command {
  const program = new Command('gpt2')
    .description('Fine-tune, train and sample GPT-2 models on CPU, WebAssembly, WebGPU and CUDA backends.')
    .option('--verbose', 'print stack traces on errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride(); // before adding commands: they inherit it, so usage errors reach main() and exit 2

  trainingOptions(program.command('finetune').description('fine-tune a pretrained GPT-2 on text files').argument('[data...]', 'text files, folders or globs (.txt, .md, .jsonl, .csv)'), 'finetune')
    .option('--model <dir|id>', 'local HF-format model directory or hub id', 'gpt2')
    .option('--lora-r <n>', 'train LoRA adapters of this rank on the frozen model instead of all its weights (README, "LoRA")', int(1))
    .option('--lora-alpha <x>', 'LoRA scaling numerator: the adapters are scaled by alpha/r (default 2r)', num(0, Infinity, true))
    .option('--lora-dropout <x>', 'dropout on the adapters\' inputs while training', num(0, 0.99), 0)
    .option('--lora-targets <list>', `modules to adapt, comma-separated: ${LORA_TARGETS.join(',')}`, loraTargets, [...LORA_TARGETS])
    .action(async function (this: Command, data: string[]) {
      const shaping = ['loraAlpha', 'loraDropout', 'loraTargets'].filter((o) => this.getOptionValueSource(o) === 'cli');
      if (shaping.length && this.opts<TrainFlags>().loraR === undefined) {
        throw new GPT2Error(`${shaping.map((o) => '--' + o.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())).join(', ')} shape LoRA adapters; add --lora-r R to train them.`);
      }
      // LoRA's adapters start at zero and want a larger step than full fine-tuning's 1e-4
      if (this.opts<TrainFlags>().loraR !== undefined && this.getOptionValueSource('lr') === 'default') this.setOptionValueWithSource('lr', 5e-4, 'default');
      await runTraining('finetune', data, withResumedOptions(this, this.opts<TrainFlags>()));
    });

  trainingOptions(program.command('train').description('train a GPT-2 from scratch on text files').argument('[data...]', 'text files, folders or globs (.txt, .md, .jsonl, .csv)'), 'train')
    .option('--init <size|config.json>', 'model shape: gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a config.json')
    .option('--tokenizer <dir>', 'directory with vocab.json + merges.txt (default GPT-2\'s)')
    .option('--train-tokenizer <vocab-size>', 'learn a new byte-level BPE of this size from the data', int(257))
    .addOption(new Option('--lora-r <n>').hideHelp().argParser(() => {
      throw new InvalidArgumentError('LoRA adapts a pretrained model; use gpt2 finetune --model MODEL --lora-r R.');
    }))
    .action(async function (this: Command, data: string[]) {
      await runTraining('train', data, withResumedOptions(this, this.opts<TrainFlags>()));
    });

  modelOptions(program.command('generate').description('sample text from a model'))
    .option('--prompt <text>', 'text to continue (default: unconditional)')
    .option('--prompt-file <file>', 'read the prompt from a file')
    .option('--max-new-tokens <n>', 'tokens to generate per sample (any length: the context slides)', int(0), 200)
    .option('--temperature <x>', 'sampling temperature (0 = greedy)', num(0), 0.8)
    .option('--top-k <n>', 'keep the k most likely tokens (0 = off)', int(0), 40)
    .option('--top-p <x>', 'nucleus sampling mass (1 = off)', num(0, 1, true), 1)
    .option('--min-p <x>', 'drop tokens below this fraction of the top probability (0 = off)', num(0, 0.999), 0)
    .option('--repetition-penalty <x>', 'HF repetition penalty (1 = off)', num(0, Infinity, true), 1)
    .option('--no-repeat-ngram-size <n>', 'never repeat an n-gram (0 = off)', int(0), 0)
    .option('--presence-penalty <x>', "OpenAI's presence penalty, -2..2 (0 = off)", num(-2, 2), 0)
    .option('--frequency-penalty <x>', "OpenAI's frequency penalty, -2..2 (0 = off)", num(-2, 2), 0)
    .option('--min-new-tokens <n>', 'no end-of-text before this many tokens', int(0), 0)
    .option('--nsamples <n>', 'number of samples', int(1), 1)
    .option('--batch-size <n>', 'samples decoded together (default all)', int(1))
    .option('--seed <n>', 'random seed (default: random, printed)', int(0))
    .option('--stop <text>', 'stop a sample at this text (repeatable)', collect, [])
    .option('--no-stop-at-eos', 'keep going past <|endoftext|>')
    .option('--include-prompt', 'print the prompt before each sample')
    .option('--out <dir>', 'also write one file per sample into this directory')
    .option('--delimiter <text>', 'printed between samples', '====================\n')
    .option('--interactive', 'a prompt loop for trying the model')
    .option('--json', 'print {"samples": [{"text", "tokens"}], "tokensPerSecond"}')
    .action(async function (this: Command) {
      await runGenerate(this.opts());
    });

  modelOptions(program.command('serve').description('an OpenAI-compatible completions server (POST /v1/completions) with continuous batching'))
    .option('--host <address>', 'address to listen on (another than loopback wants --api-key)', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free port)', int(0), 8080)
    .option('--slots <n>', 'sequences decoded together in one step (rows of the KV cache)', int(1), 8)
    .option('--max-queue <n>', 'requests that may wait for a slot; past it the server answers 429 with Retry-After', int(0), 64)
    .option('--api-key <key>', 'every route but /health wants Authorization: Bearer KEY (or set GPT2_API_KEY)')
    .option('--max-body <bytes>', 'largest request body', int(1), 1 << 20)
    .option('--grace <seconds>', 'on SIGTERM or Ctrl-C, how long requests in flight may take before they are cancelled', num(0), 30)
    .option('--model-name <id>', 'the model id clients send and /v1/models lists (default: --model as given)')
    .addOption(new Option('--init <size|config.json>', 'serve a randomly initialised model of this shape (gpt2 bench --task serve)').hideHelp())
    .action(async function (this: Command) {
      if (this.opts().init && (this.opts().model || this.opts().adapter)) throw new GPT2Error('--init serves a random model; drop --model and --adapter.');
      await runServe(this.opts());
    });

  program.command('eval').description('mean loss and perplexity of a text, or HellaSwag accuracy (--task hellaswag)')
    .option('--model <dir|id>', 'local HF-format model directory or hub id (with --adapter, default the base it records)')
    .addOption(adapterOption())
    .requiredOption('--data <file>', 'text file (or folder / glob); with --task hellaswag, HellaSwag\'s .jsonl (ctx, endings, label a line)')
    .addOption(new Option('--task <task>', 'text: loss and perplexity; hellaswag: multiple-choice acc and acc_norm, scored as llm.c\'s hellaswag.py').choices(['text', 'hellaswag']).default('text'))
    .option('--limit <n>', 'with --task hellaswag: only the first n items', int(1))
    .option('--stride <n>', 'window stride for texts longer than the context (default n_positions / 2)', int(1))
    .addOption(backendOption())
    .addOption(threadsOption())
    .addOption(precisionOption())
    .addOption(quantizeOption())
    .option('--json', 'print {"loss", "perplexity", "accuracy", "tokens"}, or {"task", "n", "acc", "acc_norm"}')
    .action(async function (this: Command) {
      await runEval(this.opts());
    });

  program.command('export').description('write a model as the folder transformers.js and ONNX Runtime load (onnx/model.onnx and the HF JSON files), or as the GGUF file llama.cpp loads')
    .requiredOption('--model <dir|id>', 'local HF-format model directory or hub id')
    .addOption(new Option('--format <format>', 'onnx: a transformers.js folder; gguf: one llama.cpp file').choices(['onnx', 'gguf']).default('onnx'))
    .requiredOption('--out <path>', 'folder to create (onnx), or the .gguf file to write (gguf)')
    .addOption(new Option('--quantize <kind>', "onnx: q8 also writes onnx/model_quantized.onnx with int8 matmul weights (transformers.js dtype 'q8'); gguf: q8_0 writes the matrices as llama.cpp's Q8_0 (F32 without)").choices(['q8', 'q8_0']))
    .option('--force', 'replace --out if it exists and is not empty')
    .option('--json', 'print {"out", "files": {name: bytes}} (onnx), or {"out", "bytes", "quantize"} (gguf)')
    .action(async function (this: Command) {
      await runExport(this.opts());
    });

  program.command('merge').description('fold a LoRA adapter into its base model: a plain HF model folder')
    .option('--model <dir|id>', 'the base model (default: the one the adapter records)')
    .requiredOption('--adapter <dir>', 'the LoRA adapter (peft format)')
    .requiredOption('--out <dir>', 'folder to create')
    .addOption(maxShardOption())
    .option('--force', 'replace --out if it exists and is not empty')
    .option('--json', 'print {"out", "base", "adapter"}')
    .action(async function (this: Command) {
      await runMerge(this.opts());
    });
  program.command('tokenize').description("token ids of a text under a model's tokenizer")
    .requiredOption('--model <dir|id>', 'local HF-format model directory or hub id')
    .option('--text <text>', 'the text')
    .option('--file <file>', 'read the text from a file')
    .option('--no-specials', 'encode <|endoftext|> as plain text')
    .option('--json', 'print {"ids": [...], "count"}')
    .action(async function (this: Command) {
      await runTokenize(this.opts());
    });

  program.command('prepare').description("a corpus of any size as llm.c's token shards (the first held out as validation), tokenized on every core")
    .argument('<data...>', 'files, folders or globs: .txt/.md, .jsonl/.csv (by --text-field), and those as .gz or .zst')
    .requiredOption('--out <dir>', 'folder for the shards (NAME_val_000000.bin, NAME_train_000001.bin, ...)')
    .option('--tokenizer <dir>', "a tokenizer folder (vocab.json + merges.txt, or tokenizer.json); default GPT-2's")
    .option('--shard-size <tokens>', 'tokens a shard (llm.c: 100000000)', int(1), 100_000_000)
    .option('--name <name>', 'what the shard files are named for', 'data')
    .option('--workers <n>', 'tokenizing threads (default: one a core)', int(1))
    .option('--text-field <name>', 'field of .jsonl / column of .csv holding the text', 'text')
    .option('--no-specials', 'read <|endoftext|> in the data as plain text, not a document boundary')
    .option('--json', 'print {"out", "shards", "tokens", "bytes", "workers", "seconds", "MBps"}')
    .action(async function (this: Command, data: string[]) {
      await runPrepare(data, this.opts());
    });

  program.command('download').description('download a hub model into the Hugging Face cache').argument('<id>', 'hub id, e.g. gpt2 or org/name[@revision]')
    .action(runDownload);

  program.command('info').description('backends available here (and why others are not), devices, versions')
    .option('--json', 'print as JSON')
    .action(async function (this: Command) {
      await runInfo(this.optsWithGlobals());
    });

  program.command('selftest').description('the conformance suite (kernels and models against float64 references) on every backend here, or one')
    .addOption(new Option('--backend <name>', 'backend to test (default: every one that starts)').choices(['all', ...BACKEND_CHOICES.filter((b) => b !== 'auto')]).default('all'))
    .addOption(threadsOption())
    .addOption(precisionOption())
    .option('--json', 'print the results as JSON')
    .action(async function (this: Command) {
      await runSelftestCommand(this.opts());
    });

  program.command('bench').description('speed of a randomly initialised model (or a model\'s own files with --model), as JSON')
    .addOption(new Option('--task <task>', 'what to time').choices(['train', 'generate', 'matmul', 'serve']).default('train'))
    .addOption(new Option('--backend <name>', 'compute backend, or onnxruntime: ONNX Runtime on our ONNX export (generate only)').choices([...BACKEND_CHOICES, 'onnxruntime']).default('auto'))
    .addOption(threadsOption())
    .addOption(precisionOption())
    .addOption(quantizeOption())
    .option('--init <size|config.json>', 'model shape', 'gpt2')
    .option('--model <dir|id>', 'time a model\'s own files instead: loading them (loadMs, loadMBps) and then the task')
    .option('--save <dir>', 'train: then save a checkpoint into this folder as training does (saveMs)')
    .addOption(maxShardOption())
    .option('--batch <n>', 'batch size', int(1), 4)
    .option('--seq <n>', 'sequence length (train; matmul times batch*seq rows too)', int(1), 64)
    .option('--steps <n>', 'timed steps after one warm-up step (train)', int(1), 3)
    .option('--prompt-tokens <n>', 'prompt length (generate)', int(1), 32)
    .option('--new-tokens <n>', 'tokens to decode (generate)', int(1), 128)
    .option('--profile', 'train and generate: also ms per step (per token) in each kernel (cpu and reference, whose kernels run when called)')
    .option('--lora-r <n>', 'train: LoRA adapters of this rank on every target module (alpha 2r) instead of all the weights', int(1))
    .addOption(new Option('--zero <stage>', 'train under mpirun: 1 shards AdamW\'s moments across the ranks (ZeRO-1)').argParser(zeroStage))
    .option('--no-overlap', 'train under mpirun: exchange the gradients after backward, not during it (to measure what overlap hides)')
    .option('--slots <n>', 'serve: the server\'s --slots (it is also timed with --slots 1 at the highest concurrency)', int(1), 16)
    .option('--concurrency <list>', 'serve: concurrent streaming clients, comma-separated', (v: string) => v.split(',').map((x) => int(1)(x)), [1, 4, 16])
    .option('--requests <n>', 'serve: requests per run (default twice the clients, at least 8; --soak 2000)', int(1))
    .option('--soak', 'serve: a tenth of the requests cancelled mid-stream and a tenth malformed, from the highest --concurrency; checks every valid one and the server\'s RSS')
    .option('--url <url>', 'serve: time an OpenAI-compatible server already running there (llama-server, say) with the same clients, instead of starting gpt2 serve')
    .option('--json', 'one line of JSON')
    .action(async function (this: Command) {
      await runBench(this.opts());
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const verbose = argv.includes('--verbose');
  try {
    await program.parseAsync(argv);
    await leaveJob(0);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has printed its one-line message; --help and --version exit 0
      return err.exitCode === 0 ? 0 : 2;
    }
    const e = err as Error;
    const message = err instanceof GPT2Error
      ? `error: ${e.message}\n${verbose ? `${e.stack}\n` : ''}`
      : `error: ${e?.message ?? String(err)}${verbose ? `\n${e?.stack}` : ' (run with --verbose for details)'}\n`;
    await leaveJob(1, message); // in an mpirun job: printed, then this rank exits here
    return 1;
  }
}
