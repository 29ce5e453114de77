// A small live line chart of the training loss on a canvas.
export class LossChart {
  private points: [number, number][] = [];
  constructor(private readonly canvas: HTMLCanvasElement) {}

  reset(): void {
    this.points = [];
    this.draw();
  }

  add(step: number, loss: number): void {
    this.points.push([step, loss]);
    this.draw();
  }

  private draw(): void {
    const c = this.canvas, g = c.getContext('2d')!;
    const W = c.width, H = c.height, L = 48, B = 24, T = 10, R = 10;
    g.clearRect(0, 0, W, H);
    g.fillStyle = '#fff';
    g.fillRect(0, 0, W, H);
    g.strokeStyle = '#999';
    g.strokeRect(L, T, W - L - R, H - T - B);
    if (this.points.length === 0) return;
    const xs = this.points.map((p) => p[0]), ys = this.points.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = Math.min(...ys), y1 = Math.max(...ys, y0 + 1e-3);
    const px = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const py = (y: number) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    g.fillStyle = '#333';
    g.font = '11px sans-serif';
    g.fillText(y1.toFixed(2), 4, T + 10);
    g.fillText(y0.toFixed(2), 4, H - B);
    g.fillText(`step ${x1}`, W - 70, H - 6);
    g.strokeStyle = '#08519c';
    g.lineWidth = 2;
    g.beginPath();
    this.points.forEach(([x, y], i) => (i ? g.lineTo(px(x), py(y)) : g.moveTo(px(x), py(y))));
    g.stroke();
  }
}
