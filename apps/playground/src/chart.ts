// A small live chart of fine-tuning on a canvas: training loss (line), validation loss (orange
// dots, same axis) and validation accuracy (green dots, its own axis on the right).
export class LossChart {
  private points: [number, number][] = [];
  private evals: { step: number; loss: number; accuracy: number }[] = [];
  constructor(private readonly canvas: HTMLCanvasElement) {}

  reset(): void {
    this.points = [];
    this.evals = [];
    this.draw();
  }

  add(step: number, loss: number): void {
    this.points.push([step, loss]);
    this.draw();
  }

  addEval(step: number, loss: number, accuracy: number): void {
    this.evals.push({ step, loss, accuracy });
    this.draw();
  }

  private draw(): void {
    const c = this.canvas, g = c.getContext('2d')!;
    const acc = this.evals.length > 0;
    const W = c.width, H = c.height, L = 48, B = 24, T = 10, R = acc ? 48 : 10;
    g.clearRect(0, 0, W, H);
    g.fillStyle = '#fff';
    g.fillRect(0, 0, W, H);
    g.strokeStyle = '#999';
    g.strokeRect(L, T, W - L - R, H - T - B);
    if (this.points.length === 0 && !acc) return;
    const xs = [...this.points.map((p) => p[0]), ...this.evals.map((e) => e.step)];
    const ys = [...this.points.map((p) => p[1]), ...this.evals.map((e) => e.loss)];
    const as = this.evals.map((e) => e.accuracy);
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = Math.min(...ys), y1 = Math.max(...ys, y0 + 1e-3);
    const a0 = acc ? Math.min(...as) : 0, a1 = acc ? Math.max(...as, a0 + 1e-3) : 1;
    const px = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const py = (y: number) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    const pa = (a: number) => T + (1 - (a - a0) / (a1 - a0)) * (H - T - B);
    g.fillStyle = '#333';
    g.font = '11px sans-serif';
    g.fillText(y1.toFixed(2), 4, T + 10);
    g.fillText(y0.toFixed(2), 4, H - B);
    g.fillText(`step ${x1}`, W - R - 60, H - 6);
    g.strokeStyle = '#08519c';
    g.lineWidth = 2;
    g.beginPath();
    this.points.forEach(([x, y], i) => (i ? g.lineTo(px(x), py(y)) : g.moveTo(px(x), py(y))));
    g.stroke();
    if (!acc) return;
    const dots = (color: string, y: (e: (typeof this.evals)[number]) => number) => {
      g.fillStyle = g.strokeStyle = color;
      g.lineWidth = 1;
      g.beginPath();
      this.evals.forEach((e, i) => (i ? g.lineTo(px(e.step), y(e)) : g.moveTo(px(e.step), y(e))));
      g.stroke();
      for (const e of this.evals) g.fillRect(px(e.step) - 3, y(e) - 3, 6, 6);
    };
    dots('#e6550d', (e) => py(e.loss));
    dots('#31a354', (e) => pa(e.accuracy));
    g.fillStyle = '#31a354';
    g.fillText(`${(100 * a1).toFixed(1)}%`, W - R + 4, T + 10);
    g.fillText(`${(100 * a0).toFixed(1)}%`, W - R + 4, H - B);
    g.fillText('— validation accuracy', L + 8, T + 26);
    g.fillStyle = '#e6550d';
    g.fillText('— validation loss', L + 8, T + 12);
  }
}
