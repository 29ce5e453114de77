// Human-facing output on stderr: warnings, notes, download and training progress (a live bar on
// a terminal, plain lines otherwise). Results (text, JSON) go to stdout from the commands.
import { MultiBar, Presets, type SingleBar } from 'cli-progress';

const fmtBytes = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(0)} kB`);

export class Reporter {
  readonly tty: boolean;
  private multi?: MultiBar;
  private bar?: SingleBar;

  /** `warnings` false silences warnings too (ranks other than 0 of a job: distributed.ts). */
  constructor(readonly quiet = false, stream: NodeJS.WriteStream = process.stderr, private readonly warnings = true) {
    this.tty = Boolean(stream.isTTY) && !quiet;
  }

  /** A line above any live bar. */
  line(text: string): void {
    if (this.quiet) return;
    if (this.multi) this.multi.log(text.endsWith('\n') ? text : text + '\n');
    else process.stderr.write(text.endsWith('\n') ? text : text + '\n');
  }

  warn(text: string): void {
    if (this.warnings) process.stderr.write(`warning: ${text}\n`);
  }

  /** A byte-progress callback for downloads. */
  bytes(label: string): (file: string, done: number, total: number) => void {
    let lastLine = 0;
    return (file, done, total) => {
      if (this.tty) {
        if (!this.multi) this.start(`${label} {file} |{bar}| {done} / {size}`, total);
        this.bar!.setTotal(total);
        this.bar!.update(done, { file, done: fmtBytes(done), size: fmtBytes(total) });
      } else if (!this.quiet && (done === total || Date.now() - lastLine > 2000)) {
        lastLine = Date.now();
        this.line(`${label} ${file}: ${fmtBytes(done)} / ${fmtBytes(total)}`);
      }
    };
  }

  endBytes(): void {
    this.stop();
  }

  private start(format: string, total: number): void {
    this.multi = new MultiBar({ format, stream: process.stderr, hideCursor: true, clearOnComplete: false, etaBuffer: 20 }, Presets.shades_classic);
    this.bar = this.multi.create(total, 0);
  }

  /** Training progress: a live bar on a terminal, else one line every `every` steps. */
  progress(total: number, every: number) {
    const format = 'step {value}/{total} |{bar}| loss {loss} (avg {avg}) | lr {lr} | {tps} tok/s{mfu} | ETA {eta_formatted}';
    if (this.tty) this.start(format, total);
    return {
      /** mfu: the model FLOPs utilization, where the backend's peak is known */
      update: (step: number, p: { loss: number; avg: number; lr: number; tps: number; mfu?: number; etaSeconds: number }) => {
        const mfu = p.mfu === undefined ? '' : ` | MFU ${(100 * p.mfu).toFixed(1)}%`;
        const payload = { loss: p.loss.toFixed(4), avg: p.avg.toFixed(4), lr: p.lr.toExponential(2), tps: Math.round(p.tps), mfu };
        if (this.bar) this.bar.update(step, payload);
        else if (step % every === 0 || step === total) {
          this.line(`step ${step}/${total} | loss ${payload.loss} (avg ${payload.avg}) | lr ${payload.lr} | ${payload.tps} tok/s${mfu} | ETA ${formatEta(p.etaSeconds)}`);
        }
      },
      stop: () => this.stop(),
    };
  }

  /** Progress through `total` items of an evaluation: a live bar on a terminal, else a line every 10 s. */
  items(label: string, total: number): (done: number, note: string) => void {
    const t0 = Date.now();
    let lastLine = t0;
    if (this.tty) this.start(`${label} {value}/{total} |{bar}| {note} | ETA {eta_formatted}`, total);
    return (done, note) => {
      if (this.bar) this.bar.update(done, { note });
      else if (!this.quiet && (done === total || Date.now() - lastLine > 10_000)) {
        lastLine = Date.now();
        this.line(`${label} ${done}/${total} | ${note} | ETA ${formatEta(((Date.now() - t0) / 1000 / done) * (total - done))}`);
      }
      if (done === total) this.stop();
    };
  }

  stop(): void {
    this.multi?.stop();
    this.multi = undefined;
    this.bar = undefined;
  }
}

export function formatEta(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.round(s % 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}
