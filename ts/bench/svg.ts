/**
 * The latency-distribution plot of `acrn-hsm bench --svg FILE`, hand-written SVG: one panel per
 * (mode, vCPUs), one line per path (and the C reference), the floor as a dashed line. X axis:
 * percentile on a log scale of 1/(1-p) (as HdrHistogram's plotter: 0%, 90%, 99%, 99.9%...);
 * Y axis: latency, log scale.
 */

export interface PlotSeries {
  label: string;
  points: { percentile: number; valueNs: number }[];
}
export interface PlotPanel {
  title: string;
  series: PlotSeries[];
  floor?: { label: string; valueNs: number };
}

const COLORS: Record<string, string> = {
  native: '#1f77b4',
  'js-sync': '#2ca02c',
  'js-async': '#d62728',
  'c-reference': '#7f7f7f',
};

function esc(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c);
}

function fmtNs(ns: number): string {
  if (ns >= 1e6) return `${+(ns / 1e6).toPrecision(3)} ms`;
  if (ns >= 1e3) return `${+(ns / 1e3).toPrecision(3)} µs`;
  return `${+ns.toPrecision(3)} ns`;
}

/** The SVG document. */
export function renderSvg(panels: PlotPanel[], columns: number, title: string): string {
  const pw = 330;
  const ph = 240;
  const m = { l: 58, r: 10, t: 26, b: 34 };
  const cols = Math.max(1, columns);
  const rows = Math.ceil(panels.length / cols);
  const W = cols * pw;
  const H = rows * ph + 60;
  // Common axes across panels, so they compare at a glance.
  let xMax = 1;
  let yMin = Number.POSITIVE_INFINITY;
  let yMax = 0;
  for (const p of panels) {
    for (const s of p.series) {
      for (const pt of s.points) {
        if (pt.percentile < 1) xMax = Math.max(xMax, Math.log10(1 / (1 - pt.percentile)));
        if (pt.valueNs > 0) {
          yMin = Math.min(yMin, pt.valueNs);
          yMax = Math.max(yMax, pt.valueNs);
        }
      }
    }
    if (p.floor && p.floor.valueNs > 0) {
      yMin = Math.min(yMin, p.floor.valueNs);
      yMax = Math.max(yMax, p.floor.valueNs);
    }
  }
  if (!Number.isFinite(yMin)) {
    yMin = 1;
    yMax = 10;
  }
  xMax = Math.ceil(xMax + 0.3);
  const ly0 = Math.floor(Math.log10(yMin));
  const ly1 = Math.max(ly0 + 1, Math.ceil(Math.log10(yMax)));
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="10">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="16" text-anchor="middle" font-size="13">${esc(title)}</text>`);
  panels.forEach((p, i) => {
    const ox = (i % cols) * pw;
    const oy = 24 + Math.floor(i / cols) * ph;
    const iw = pw - m.l - m.r;
    const ih = ph - m.t - m.b;
    const X = (pct: number) => {
      const v = pct >= 1 ? xMax : Math.min(xMax, Math.log10(1 / (1 - pct)));
      return ox + m.l + (v / xMax) * iw;
    };
    const Y = (ns: number) => oy + m.t + ih - ((Math.log10(Math.max(ns, 1)) - ly0) / (ly1 - ly0)) * ih;
    out.push(`<g><text x="${ox + m.l + iw / 2}" y="${oy + 14}" text-anchor="middle" font-size="11">${esc(p.title)}</text>`);
    out.push(`<rect x="${ox + m.l}" y="${oy + m.t}" width="${iw}" height="${ih}" fill="none" stroke="#999"/>`);
    for (let d = ly0; d <= ly1; d++) {
      const y = Y(10 ** d);
      out.push(`<line x1="${ox + m.l}" x2="${ox + m.l + iw}" y1="${y}" y2="${y}" stroke="#eee"/>`);
      out.push(`<text x="${ox + m.l - 3}" y="${y + 3}" text-anchor="end">${esc(fmtNs(10 ** d))}</text>`);
    }
    for (let d = 0; d <= xMax; d++) {
      const x = ox + m.l + (d / xMax) * iw;
      const label = d === 0 ? '0%' : `${(100 - 100 / 10 ** d).toFixed(Math.max(0, d - 2))}%`;
      out.push(`<line x1="${x}" x2="${x}" y1="${oy + m.t}" y2="${oy + m.t + ih}" stroke="#eee"/>`);
      out.push(`<text x="${x}" y="${oy + m.t + ih + 12}" text-anchor="middle">${label}</text>`);
    }
    if (p.floor && p.floor.valueNs > 0) {
      const y = Y(p.floor.valueNs);
      out.push(`<line x1="${ox + m.l}" x2="${ox + m.l + iw}" y1="${y}" y2="${y}" stroke="#000" stroke-dasharray="4 3"/>`);
      out.push(`<text x="${ox + m.l + iw - 2}" y="${y - 3}" text-anchor="end">${esc(p.floor.label)}</text>`);
    }
    p.series.forEach((s, k) => {
      if (s.points.length === 0) return;
      const d = s.points.map((pt, j) => `${j ? 'L' : 'M'}${X(pt.percentile).toFixed(1)},${Y(pt.valueNs).toFixed(1)}`).join(' ');
      const color = COLORS[s.label] ?? '#9467bd';
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
      out.push(`<text x="${ox + m.l + 4}" y="${oy + m.t + 11 + 11 * k}" fill="${color}">${esc(s.label)}</text>`);
    });
    out.push(`<text x="${ox + m.l + iw / 2}" y="${oy + ph - 6}" text-anchor="middle" fill="#555">percentile (log 1/(1-p))</text></g>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
