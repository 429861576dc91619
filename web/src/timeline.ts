// Per-vCPU timeline on a canvas. Drawing cost must not grow with the number of requests in
// view (a million-request trace stays smooth), so requests narrower than a few pixels are
// accumulated per pixel column (busy fraction + the longest request's device), and only
// requests wide enough to see are drawn one by one, with their stages. Visible requests are
// found per lane by binary search on the start times.
import { fitCanvas } from './dom.js';
import { formatNs, formatTick } from './format.js';
import { lowerBound, type Lane, type Model } from './model.js';

const GUTTER = 64;
const AXIS = 24;
const MIN_SPAN_NS = 20;
/** Requests at least this wide (px) are drawn individually, with their stages. */
const WIDE_PX = 5;

/** Device colours; requests no device served are grey. */
export const PALETTE = ['#3b7ddd', '#e8833a', '#2fa37a', '#b45fc7', '#d64f5a', '#c9a227', '#3fa7c4', '#8c6d4f', '#6b7bd6', '#77a33b'];
const NONE_COLOUR = '#9aa3b2';
const FADED_COLOUR = '#e4e8ef';
/** Stage colours, in stamp order: dispatch, queue, handler, reply, completion, release. */
export const STAGE_COLOURS = ['#9db7e8', '#c7b3e6', '#f0a35e', '#8fd1b0', '#e6cf7a', '#c4cbd6'];
export const STAGE_NAMES = ['dispatch', 'queue', 'handler', 'reply', 'completion', 'release'];

export class Timeline {
  #model: Model | null = null;
  #v0 = 0;
  #v1 = 1;
  #selected = -1;
  #frame = 0;
  #laneH = 26;
  #colour = new Map<number, string>();
  // Per-column accumulators, reused across frames.
  #cover = new Float32Array(0);
  #count = new Uint32Array(0);
  /** Per column × device slot (devices in header order, then "none"): covered px. */
  #devCover = new Float32Array(0);
  /** Device id → slot in #devCover. */
  #slot = new Map<number, number>();
  #slots = 1;
  /** Records to highlight (a report row's group); the others are drawn faded. */
  #mask: Uint8Array | null = null;

  /** Called with the record index when a request is clicked (-1: none there). */
  onSelect: (index: number) => void = () => {};

  constructor(private readonly canvas: HTMLCanvasElement, private readonly rangeLabel: HTMLElement) {
    this.#bindInput();
    new ResizeObserver(() => this.requestDraw()).observe(canvas);
  }

  setModel(model: Model): void {
    this.#model = model;
    this.#selected = -1;
    this.#colour = new Map(model.trace.header.devices.map((d, i) => [d.id, PALETTE[i % PALETTE.length] as string]));
    this.#slot = new Map(model.trace.header.devices.map((d, i) => [d.id, i]));
    // Device slots, then "no device", then "not in the highlighted group".
    this.#slots = model.trace.header.devices.length + 2;
    this.#mask = null;
    this.#devCover = new Float32Array(0);
    const lanes = model.lanes.length;
    this.#laneH = lanes <= 8 ? 28 : lanes <= 16 ? 20 : Math.max(8, Math.floor(320 / lanes));
    this.canvas.style.height = `${AXIS + lanes * this.#laneH + 8}px`;
    this.fit();
  }

  /** Device id → colour (for the legend). */
  colourOf(device: number): string {
    return this.#colour.get(device) ?? NONE_COLOUR;
  }

  /** Highlights the records of `mask` (null: all drawn normally). */
  highlight(mask: Uint8Array | null): void {
    this.#mask = mask;
    if (mask) this.canvas.dataset.highlight = 'true';
    else delete this.canvas.dataset.highlight;
    this.requestDraw();
  }

  select(index: number): void {
    this.#selected = index;
    this.requestDraw();
  }

  /** Shows the whole trace. */
  fit(): void {
    const m = this.#model;
    if (!m) return;
    const pad = (m.t1 - m.t0) * 0.01;
    this.setView(m.t0 - pad, m.t1 + pad);
  }

  /** Zooms by `factor` (< 1 zooms in) around the time at canvas x (default: the middle). */
  zoom(factor: number, atX?: number): void {
    const plotW = this.#plotWidth();
    const frac = atX === undefined ? 0.5 : Math.min(1, Math.max(0, (atX - GUTTER) / plotW));
    const at = this.#v0 + frac * (this.#v1 - this.#v0);
    const span = Math.max(MIN_SPAN_NS, (this.#v1 - this.#v0) * factor);
    this.setView(at - frac * span, at - frac * span + span);
  }

  /** The visible window, clamped to the trace (plus a margin) and to a minimum span. */
  setView(v0: number, v1: number): void {
    const m = this.#model;
    if (!m) return;
    const margin = (m.t1 - m.t0) * 0.05;
    const lo = m.t0 - margin;
    const hi = m.t1 + margin;
    let span = Math.min(Math.max(v1 - v0, MIN_SPAN_NS), hi - lo);
    if (!(span > 0)) span = MIN_SPAN_NS;
    let a = Math.min(Math.max(v0, lo), hi - span);
    if (!Number.isFinite(a)) a = lo;
    this.#v0 = a;
    this.#v1 = a + span;
    // Exposed for tests and tools: the visible range in ns since the trace clock's start.
    this.canvas.dataset.viewStartNs = String(Math.round(this.#v0));
    this.canvas.dataset.viewEndNs = String(Math.round(this.#v1));
    this.rangeLabel.textContent = `${formatNs(Math.max(0, this.#v0))} – ${formatNs(this.#v1)}  (${formatNs(span)} visible)`;
    this.requestDraw();
    this.onView?.(this.#v0, this.#v1);
  }

  /** Called with the visible window (ns since the trace clock's start) whenever it changes. */
  onView: ((v0: number, v1: number) => void) | null = null;

  requestDraw(): void {
    if (this.#frame) return;
    this.#frame = requestAnimationFrame(() => {
      this.#frame = 0;
      this.draw();
    });
  }

  #plotWidth(): number {
    // Same rounding as draw() (fitCanvas rounds the CSS width), so clicks map to drawn pixels.
    return Math.max(1, Math.floor(Math.round(this.canvas.getBoundingClientRect().width) - GUTTER - 8));
  }

  draw(): void {
    const m = this.#model;
    if (!m) return;
    const t = performance.now();
    const { ctx, width, height } = fitCanvas(this.canvas);
    const plotW = Math.max(1, Math.floor(width - GUTTER - 8));
    const nsPerPx = (this.#v1 - this.#v0) / plotW;
    ctx.clearRect(0, 0, width, height);
    this.#drawAxis(ctx, plotW, height, nsPerPx);
    if (this.#cover.length !== plotW || this.#devCover.length !== plotW * this.#slots) {
      this.#cover = new Float32Array(plotW);
      this.#count = new Uint32Array(plotW);
      this.#devCover = new Float32Array(plotW * this.#slots);
    }
    let drawn = 0;
    m.lanes.forEach((lane, li) => {
      drawn += this.#drawLane(ctx, m, lane, AXIS + li * this.#laneH, plotW, nsPerPx);
    });
    const d = this.canvas.dataset;
    d.gutter = String(GUTTER);
    d.axisHeight = String(AXIS);
    d.laneHeight = String(this.#laneH);
    d.lanes = String(m.lanes.length);
    d.visibleRequests = String(drawn);
    d.renderMs = (performance.now() - t).toFixed(1);
  }

  #drawAxis(ctx: CanvasRenderingContext2D, plotW: number, height: number, nsPerPx: number): void {
    const target = nsPerPx * 110;
    const p = 10 ** Math.floor(Math.log10(target));
    const step = target / p < 2 ? p : target / p < 5 ? 2 * p : 5 * p;
    ctx.font = '11px system-ui, sans-serif';
    ctx.textAlign = 'center';
    ctx.lineWidth = 1;
    for (let tick = Math.ceil(this.#v0 / step) * step; tick <= this.#v1; tick += step) {
      const x = Math.round(GUTTER + (tick - this.#v0) / nsPerPx) + 0.5;
      ctx.strokeStyle = '#eef1f6';
      ctx.beginPath();
      ctx.moveTo(x, AXIS - 4);
      ctx.lineTo(x, height);
      ctx.stroke();
      ctx.fillStyle = '#6a7587';
      ctx.fillText(formatTick(tick, step), x, AXIS - 9);
    }
    ctx.strokeStyle = '#d5dae3';
    ctx.beginPath();
    ctx.moveTo(GUTTER, AXIS - 0.5);
    ctx.lineTo(GUTTER + plotW, AXIS - 0.5);
    ctx.stroke();
  }

  /** Draws one lane; returns how many requests overlap the view. */
  #drawLane(ctx: CanvasRenderingContext2D, m: Model, lane: Lane, top: number, plotW: number, nsPerPx: number): number {
    const h = this.#laneH;
    ctx.fillStyle = lane.vcpu % 2 ? '#fafbfd' : '#ffffff';
    ctx.fillRect(GUTTER, top, plotW, h);
    ctx.fillStyle = '#3b4656';
    ctx.textAlign = 'right';
    ctx.font = `${Math.min(12, h - 6)}px system-ui, sans-serif`;
    ctx.fillText(`vCPU ${lane.vcpu}`, GUTTER - 8, top + h / 2 + 4);
    const barTop = top + 3;
    const barH = h - 6;
    const cover = this.#cover.fill(0);
    const count = this.#count.fill(0);
    const devCover = this.#devCover.fill(0);
    const slots = this.#slots;
    const slotOf = this.#slot;
    const mask = this.#mask;
    const v0 = this.#v0;
    const v1 = this.#v1;
    const first = lowerBound(lane.start, v0 - lane.maxSpan);
    const last = lowerBound(lane.start, v1);
    const wide: number[] = [];
    let visible = 0;
    for (let k = first; k < last; k++) {
      const e = lane.end[k] as number;
      if (e < v0) continue;
      visible++;
      const x0 = ((lane.start[k] as number) - v0) / nsPerPx;
      const x1 = (e - v0) / nsPerPx;
      if (x1 - x0 >= WIDE_PX && (!mask || mask[lane.index[k] as number])) {
        wide.push(k);
        continue;
      }
      const c0 = Math.max(0, Math.floor(x0));
      const c1 = Math.min(plotW - 1, Math.floor(x1));
      const i = lane.index[k] as number;
      const slot = mask && !mask[i] ? slots - 1 : (slotOf.get(m.trace.records.device[i] as number) ?? slots - 2);
      for (let c = c0; c <= c1; c++) {
        // A zero-length request still counts a little, so it shows.
        const px = Math.max(0.05, Math.min(x1, c + 1) - Math.max(x0, c));
        cover[c]! += px;
        count[c]! += 1;
        devCover[c * slots + slot]! += px;
      }
    }
    // Binned columns: opacity shows how busy the vCPU was in that column, and the column is
    // split between the devices in proportion to the time each of them took there. With a
    // highlighted group, the others are a faded backdrop and any highlighted request makes
    // its column fully visible (a single short request must not vanish among the others).
    const colours = [...this.#colour.values(), NONE_COLOUR, FADED_COLOUR];
    const faded = slots - 1;
    for (let c = 0; c < plotW; c++) {
      if (count[c] === 0) continue;
      const base = c * slots;
      const busy = cover[c] as number;
      if (mask) {
        const other = devCover[base + faded] as number;
        const mine = busy - other;
        if (other > 0) {
          ctx.globalAlpha = 1;
          ctx.fillStyle = FADED_COLOUR;
          ctx.fillRect(GUTTER + c, barTop, 1, barH);
        }
        if (mine <= 0) continue;
        ctx.globalAlpha = 1;
        let y = barTop;
        for (let d = 0; d < faded; d++) {
          const part = devCover[base + d] as number;
          if (part === 0) continue;
          const h = (part / mine) * barH;
          ctx.fillStyle = colours[d] as string;
          ctx.fillRect(GUTTER + c, y, 1, h);
          y += h;
        }
        continue;
      }
      ctx.globalAlpha = 0.35 + 0.65 * Math.min(1, busy);
      let y = barTop;
      for (let d = 0; d < slots; d++) {
        const part = devCover[base + d] as number;
        if (part === 0) continue;
        const h = (part / busy) * barH;
        ctx.fillStyle = colours[d] as string;
        ctx.fillRect(GUTTER + c, y, 1, h);
        y += h;
      }
    }
    ctx.globalAlpha = 1;
    for (const k of wide) this.#drawRequest(ctx, m, lane.index[k] as number, barTop, barH, nsPerPx, plotW);
    const sel = this.#selected;
    if (sel >= 0 && (m.trace.records.vcpu[sel] as number) === lane.vcpu) {
      const x0 = Math.max(-2, ((m.start[sel] as number) - v0) / nsPerPx);
      const x1 = Math.min(plotW + 2, ((m.end[sel] as number) - v0) / nsPerPx);
      if (x1 >= -2 && x0 <= plotW + 2) {
        const w = Math.max(3, x1 - x0);
        ctx.strokeStyle = '#111827';
        ctx.lineWidth = 2;
        ctx.strokeRect(GUTTER + x0 - (w - (x1 - x0)) / 2, barTop - 1.5, w, barH + 3);
        ctx.lineWidth = 1;
      }
    }
    return visible;
  }

  /** One request wide enough to see: its device colour, and its stages as a band below. */
  #drawRequest(ctx: CanvasRenderingContext2D, m: Model, i: number, top: number, h: number, nsPerPx: number, plotW: number): void {
    const v0 = this.#v0;
    const clip = (x: number) => Math.min(plotW, Math.max(0, x));
    const x0 = clip(((m.start[i] as number) - v0) / nsPerPx);
    const x1 = clip(((m.end[i] as number) - v0) / nsPerPx);
    ctx.fillStyle = this.colourOf(m.trace.records.device[i] as number);
    ctx.fillRect(GUTTER + x0, top, Math.max(1, x1 - x0 - 1), h);
    const band = Math.max(3, Math.floor(h * 0.3));
    let prev = NaN;
    for (let s = 0; s < 7; s++) {
      const v = m.stamps[i * 7 + s] as number;
      if (Number.isNaN(v)) continue;
      if (!Number.isNaN(prev) && s > 0) {
        const a = clip((prev - v0) / nsPerPx);
        const b = clip((v - v0) / nsPerPx);
        ctx.fillStyle = STAGE_COLOURS[s - 1] as string;
        ctx.fillRect(GUTTER + a, top + h - band, Math.max(0, b - a), band);
      }
      prev = v;
    }
  }

  /** The request under canvas point (x, y), or -1: the one containing that time, else the nearest within 4 px. */
  hitTest(x: number, y: number): number {
    const m = this.#model;
    if (!m || x < GUTTER) return -1;
    const li = Math.floor((y - AXIS) / this.#laneH);
    const lane = m.lanes[li];
    if (!lane) return -1;
    const nsPerPx = (this.#v1 - this.#v0) / this.#plotWidth();
    const t = this.#v0 + (x - GUTTER) * nsPerPx;
    const tol = 4 * nsPerPx;
    const first = lowerBound(lane.start, t - tol - lane.maxSpan);
    const last = lowerBound(lane.start, t + tol + 1e-9);
    let best = -1;
    let bestDist = Infinity;
    for (let k = first; k < last; k++) {
      const s = lane.start[k] as number;
      const e = lane.end[k] as number;
      const dist = t < s ? s - t : t > e ? t - e : 0;
      if (dist <= tol && dist < bestDist) {
        bestDist = dist;
        best = lane.index[k] as number;
      }
    }
    return best;
  }

  #bindInput(): void {
    const c = this.canvas;
    // Keyboard: + / - zoom, arrows pan by a tenth of the view, 0 fits.
    c.tabIndex = 0;
    c.setAttribute('aria-label', 'timeline: + and - zoom, arrow keys pan, 0 shows everything');
    c.addEventListener('keydown', (ev) => {
      const span = this.#v1 - this.#v0;
      if (ev.key === '+' || ev.key === '=') this.zoom(0.5);
      else if (ev.key === '-' || ev.key === '_') this.zoom(2);
      else if (ev.key === 'ArrowLeft') this.setView(this.#v0 - span / 10, this.#v1 - span / 10);
      else if (ev.key === 'ArrowRight') this.setView(this.#v0 + span / 10, this.#v1 + span / 10);
      else if (ev.key === '0') this.fit();
      else return;
      ev.preventDefault();
    });
    c.addEventListener(
      'wheel',
      (ev) => {
        ev.preventDefault();
        const r = c.getBoundingClientRect();
        // Horizontal wheel / shift+wheel pans, vertical zooms.
        if (Math.abs(ev.deltaX) > Math.abs(ev.deltaY) || ev.shiftKey) {
          const d = (ev.shiftKey ? ev.deltaY : ev.deltaX) * ((this.#v1 - this.#v0) / this.#plotWidth());
          this.setView(this.#v0 + d, this.#v1 + d);
        } else {
          this.zoom(Math.exp(ev.deltaY * 0.0015), ev.clientX - r.left);
        }
      },
      { passive: false },
    );
    let drag: { x: number; v0: number; v1: number; moved: boolean } | null = null;
    c.addEventListener('pointerdown', (ev) => {
      if (ev.button !== 0) return;
      drag = { x: ev.clientX, v0: this.#v0, v1: this.#v1, moved: false };
      c.setPointerCapture(ev.pointerId);
    });
    c.addEventListener('pointermove', (ev) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x;
      if (Math.abs(dx) > 3) drag.moved = true;
      if (!drag.moved) return;
      c.classList.add('dragging');
      const d = -dx * ((drag.v1 - drag.v0) / this.#plotWidth());
      this.setView(drag.v0 + d, drag.v1 + d);
    });
    c.addEventListener('pointerup', (ev) => {
      const wasDrag = drag?.moved ?? false;
      drag = null;
      c.classList.remove('dragging');
      if (wasDrag) return;
      const r = c.getBoundingClientRect();
      const i = this.hitTest(ev.clientX - r.left, ev.clientY - r.top);
      if (i >= 0) this.select(i);
      this.onSelect(i);
    });
    c.addEventListener('pointercancel', () => {
      drag = null;
      c.classList.remove('dragging');
    });
  }
}
