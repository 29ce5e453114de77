// The loss curve of a run as a standalone SVG (any browser or image viewer opens it): training
// loss per step, its running mean, and validation loss points, on shared axes; optionally
// validation accuracy on a right-hand axis, and marked steps (epochs, the best evaluation).

export interface Series {
  name: string;
  color: string;
  points: [number, number][];
  dots?: boolean;
}

export interface PlotOptions {
  /** series on a right-hand axis of their own */
  right?: { label: string; series: Series[] };
  /** vertical lines at these steps, labelled above the plot (labels closer than 50 px to the last are left out) or, with a color, inside it at the bottom */
  marks?: { x: number; label: string; color?: string }[];
}

/** [lo, hi] of the finite y values, padded by 5% */
function yRange(series: Series[]): [number, number] {
  const ys = series.flatMap((s) => s.points.map(([, y]) => y)).filter(Number.isFinite);
  const y0 = Math.min(...ys), y1 = Math.max(...ys), pad = (y1 - y0) * 0.05 || 1;
  return [y0 - pad, y1 + pad];
}

export function lossCurveSvg(series: Series[], title: string, opts: PlotOptions = {}): string {
  const right = opts.right?.series.some((s) => s.points.length) ? opts.right : undefined;
  const W = 800, H = 480, L = 70, R = right ? 70 : 20, T = 40, B = 50;
  const xs = [...series, ...(right?.series ?? [])].flatMap((s) => s.points.map(([x]) => x));
  const x0 = Math.min(...xs, 0), x1 = Math.max(...xs, 1);
  const [lo, hi] = yRange(series);
  const [rlo, rhi] = right ? yRange(right.series) : [0, 1];
  const px = (x: number) => L + ((x - x0) / (x1 - x0 || 1)) * (W - L - R);
  const py = (y: number) => T + (1 - (y - lo) / (hi - lo)) * (H - T - B);
  const pr = (y: number) => T + (1 - (y - rlo) / (rhi - rlo)) * (H - T - B);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const y = lo + ((hi - lo) * i) / 5, x = x0 + ((x1 - x0) * i) / 5;
    out.push(`<line x1="${L}" x2="${W - R}" y1="${py(y)}" y2="${py(y)}" stroke="#eee"/>`);
    out.push(`<text x="${L - 6}" y="${py(y) + 4}" text-anchor="end">${y.toFixed(2)}</text>`);
    out.push(`<text x="${px(x)}" y="${H - B + 18}" text-anchor="middle">${Math.round(x)}</text>`);
    if (right) out.push(`<text x="${W - R + 6}" y="${pr(rlo + ((rhi - rlo) * i) / 5) + 4}">${(rlo + ((rhi - rlo) * i) / 5).toFixed(3)}</text>`);
  }
  let lastLabel = -Infinity;
  for (const m of (opts.marks ?? []).filter((m) => m.x >= x0 && m.x <= x1)) {
    const x = px(m.x);
    out.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${T}" y2="${H - B}" stroke="${m.color ?? '#bbb'}" stroke-dasharray="4 3"/>`);
    if (m.color) out.push(`<text x="${(x + 4).toFixed(1)}" y="${H - B - 6}" font-size="11" fill="${m.color}">${esc(m.label)}</text>`);
    else if (x - lastLabel >= 50) {
      out.push(`<text x="${x.toFixed(1)}" y="${T - 4}" text-anchor="middle" font-size="10" fill="#666">${esc(m.label)}</text>`);
      lastLabel = x;
    }
  }
  if (right) {
    out.push(`<line x1="${W - R}" x2="${W - R}" y1="${T}" y2="${H - B}" stroke="#333"/>`);
    out.push(`<text x="${W - 14}" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(90 ${W - 14} ${(T + H - B) / 2})">${esc(right.label)}</text>`);
  }
  out.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#333"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">step</text>`);
  out.push(`<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">loss</text>`);
  const all = [...series.map((s) => ({ s, y: py })), ...(right?.series ?? []).map((s) => ({ s, y: pr }))];
  all.forEach(({ s, y: sy }, i) => {
    const pts = s.points.filter(([, y]) => Number.isFinite(y));
    if (s.dots) for (const [x, y] of pts) out.push(`<circle cx="${px(x)}" cy="${sy(y)}" r="3.5" fill="${s.color}"/>`);
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="${s.dots ? 1.5 : 1.2}" points="${pts.map(([x, y]) => `${px(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`);
    out.push(`<rect x="${W - R - 170}" y="${T + 8 + i * 18}" width="12" height="3" fill="${s.color}"/><text x="${W - R - 152}" y="${T + 13 + i * 18}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
