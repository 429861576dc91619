// The viewer: loads a trace (from ?trace=URL on this page's own origin when `acrn-hsm trace
// view` serves it, from the file input, or dropped on the page), decodes it with the wasm
// decoder, and fills the summary, report, histogram and timeline.
import { AcrnHsmError, loadAcrn, type TraceGroupBy, type TraceReport } from './acrn.js';
import { showDetails } from './details.js';
import { byId, el } from './dom.js';
import { formatCount, formatNs } from './format.js';
import { Histogram } from './histogram.js';
import { buildModel, selectGroup, type Model } from './model.js';
import { setupPageDump } from './pagedump.js';
import { ReportTable } from './table.js';
import { PALETTE, STAGE_COLOURS, STAGE_NAMES, Timeline } from './timeline.js';

const errorBox = byId<HTMLDivElement>('error');
const notice = byId<HTMLDivElement>('notice');
const table = new ReportTable(byId<HTMLTableElement>('report-table'));
const histogram = new Histogram(byId<HTMLCanvasElement>('latency-histogram'));
const timeline = new Timeline(byId<HTMLCanvasElement>('timeline'), byId('timeline-range'));
const groupBy = byId<HTMLSelectElement>('group-by');
const reportWindow = byId<HTMLInputElement>('report-window');
const details = byId('request-details');
const exportChrome = byId<HTMLButtonElement>('export-chrome');
const exportCsv = byId<HTMLButtonElement>('export-csv');

let model: Model | null = null;
let loadedAcrn: Awaited<ReturnType<typeof loadAcrn>> | null = null;
const reports = new Map<TraceGroupBy, TraceReport>();

function showError(what: string, err: unknown, note?: string): void {
  errorBox.replaceChildren();
  const msg = el('span', 'msg');
  if (err instanceof AcrnHsmError) {
    errorBox.dataset.code = err.code;
    msg.append(el('span', 'code', err.code), `${what}: ${err.message}`);
  } else {
    delete errorBox.dataset.code;
    msg.append(`${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (note) msg.append(el('span', 'note', ` (${note})`));
  const close = el('button', 'close', '×');
  close.title = 'dismiss';
  close.setAttribute('aria-label', 'dismiss');
  close.addEventListener('click', clearError);
  errorBox.append(msg, close);
  errorBox.hidden = false;
}

function clearError(): void {
  errorBox.hidden = true;
  errorBox.replaceChildren();
}

/** Decodes `bytes` and shows them; on error, keeps whatever was shown before. */
async function open(bytes: Uint8Array, name: string): Promise<void> {
  const acrn = await loadAcrn();
  let next: Model;
  // Big traces take a moment: say so, and let the browser paint it before decoding.
  notice.hidden = false;
  notice.textContent = `Decoding ${name} (${formatCount(Math.round(bytes.length / 1024))} KiB)…`;
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  try {
    next = buildModel(acrn.decodeTrace(bytes), bytes, name);
  } catch (err) {
    notice.hidden = true;
    // Named like the CLI's errors (file: message with the byte offset); what was shown stays.
    showError(name, err, model ? `still showing ${model.name}` : undefined);
    return;
  }
  clearError();
  model = next;
  reports.clear();
  byId('file-name').textContent = name;
  document.title = `${name} — acrn-hsm trace viewer`;
  byId('empty').hidden = true;
  byId('viewer').hidden = false;
  exportChrome.disabled = false;
  exportCsv.disabled = false;
  showSummary(next);
  notice.hidden = next.trace.footer;
  notice.textContent = next.trace.footer ? '' : 'This trace has no footer: its writer did not finish it (crash, or still being written). The records it has are shown.';
  showReport();
  // On a real ACRN system the process does not see PENDING/FREE: show what it does see.
  if (next.total.some((v) => !Number.isNaN(v))) histogram.setData(next.total, 'PENDING → FREE');
  else histogram.setData(next.end.map((e, i) => e - (next.start[i] as number)), 'first → last observed stamp');
  timeline.setModel(next);
  details.replaceChildren(el('p', 'muted', 'Click a request on the timeline.'));
  showLegend(next);
  document.body.dataset.loaded = 'true';
}

function showSummary(m: Model): void {
  const h = m.trace.header;
  byId('summary-requests').textContent = formatCount(m.trace.count);
  byId('summary-requests').dataset.value = String(m.trace.count);
  byId('summary-duration').textContent = formatNs(m.trace.count ? m.t1 - m.t0 : null);
  byId('summary-vcpus').textContent = String(m.lanes.length);
  byId('summary-devices').textContent = String(h.devices.length);
  const wall = h.clock.wallStartNs ? new Date(Number(h.clock.wallStartNs / 1_000_000n)).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : 'wall clock unknown';
  byId('summary-vm').textContent = `${h.vm.name || '(unnamed)'} · vmid ${h.vm.vmid} · ${h.vm.completion} completion · ${h.clock.source} · ${wall}`;
}

/** The timeline's visible window (ns since the clock start), for the windowed report. */
let view: [number, number] | null = null;
let viewTimer: ReturnType<typeof setTimeout> | undefined;

function showReport(): void {
  const m = model;
  if (!m) return;
  const by = groupBy.value as TraceGroupBy;
  if (reportWindow.checked && view && loadedAcrn) {
    // The report of the requests that start in the visible window (not cached: it moves).
    const start = m.trace.header.clock.startNs;
    const from = start + BigInt(Math.max(0, Math.floor(view[0])));
    const to = start + BigInt(Math.max(0, Math.ceil(view[1])));
    try {
      const report = JSON.parse(loadedAcrn.traceReportWindowJson(m.bytes, by, from, to)) as TraceReport;
      table.show(report);
      byId('report-table').dataset.window = `${view[0].toFixed(0)}-${view[1].toFixed(0)}`;
    } catch (err) {
      showError('report', err);
    }
    return;
  }
  delete byId('report-table').dataset.window;
  let report = reports.get(by);
  if (!report) {
    try {
      report = JSON.parse(loadedAcrn?.traceReportJson(m.bytes, by) ?? 'null') as TraceReport;
    } catch (err) {
      showError('report', err);
      return;
    }
    reports.set(by, report);
  }
  table.show(report);
  // A new grouping drops the row selection.
  histogram.setSelection(null);
  timeline.highlight(null);
}

function showLegend(m: Model): void {
  const legend = byId('timeline-legend');
  legend.replaceChildren();
  const item = (colour: string, text: string) => {
    const s = el('span');
    const sw = el('span', 'sw');
    sw.style.background = colour;
    s.append(sw, text);
    legend.append(s);
  };
  m.trace.header.devices.forEach((d, i) => item(PALETTE[i % PALETTE.length] as string, d.name));
  item('#9aa3b2', '(no device)');
  legend.append(el('span', 'muted', '· stages:'));
  STAGE_NAMES.forEach((n, i) => item(STAGE_COLOURS[i] as string, n));
}

function download(text: string, name: string, type: string): void {
  // A blob URL: the file is made here and saved locally, nothing is uploaded.
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function baseName(): string {
  return (model?.name ?? 'trace').replace(/\.[^.]*$/, '') || 'trace';
}

async function openFile(f: File): Promise<void> {
  await open(new Uint8Array(await f.arrayBuffer()), f.name);
}

async function openFromUrl(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const src = params.get('trace');
  if (!src) return;
  // Same origin only: the page never fetches from anywhere else (the CSP enforces it too).
  const url = new URL(src, location.href);
  if (url.origin !== location.origin) {
    showError('trace', new Error(`refusing to fetch ${url.href}: only this page's own origin is allowed`));
    return;
  }
  try {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`${res.status} ${res.statusText} fetching ${url.pathname}`);
    await open(new Uint8Array(await res.arrayBuffer()), params.get('name') ?? url.pathname.split('/').pop() ?? 'trace');
  } catch (err) {
    showError('trace', err);
  }
}

function setupInputs(): void {
  for (const id of ['file-input', 'file-input-2']) {
    const input = byId<HTMLInputElement>(id);
    input.addEventListener('change', () => {
      const f = input.files?.[0];
      if (f) void openFile(f);
      input.value = '';
    });
  }
  groupBy.addEventListener('change', showReport);
  const stages = byId<HTMLInputElement>('show-stages');
  stages.addEventListener('change', () => table.showStages(stages.checked));
  reportWindow.addEventListener('change', () => showReport());
  timeline.onView = (v0, v1) => {
    view = [v0, v1];
    if (!reportWindow.checked) return;
    clearTimeout(viewTimer);
    viewTimer = setTimeout(() => showReport(), 120);
  };
  byId('zoom-in').addEventListener('click', () => timeline.zoom(0.5));
  byId('zoom-out').addEventListener('click', () => timeline.zoom(2));
  byId('zoom-reset').addEventListener('click', () => timeline.fit());
  table.onSelect = (key) => {
    if (!model) return;
    const sel = key === null ? null : selectGroup(model, groupBy.value, key);
    histogram.setSelection(sel?.mask ?? null, key ?? '');
    timeline.highlight(sel?.mask ?? null);
  };
  timeline.onSelect = (i) => {
    if (model) showDetails(details, model, i);
  };
  exportChrome.addEventListener('click', () => {
    if (!model || !loadedAcrn) return;
    try {
      download(loadedAcrn.traceExportChrome(model.bytes), `${baseName()}.chrome.json`, 'application/json');
      notice.hidden = false;
      notice.textContent = `Saved ${baseName()}.chrome.json. Open https://ui.perfetto.dev and drop the file there ("Open trace file"): this page does not send the trace anywhere itself.`;
    } catch (err) {
      showError('export', err);
    }
  });
  exportCsv.addEventListener('click', () => {
    if (!model || !loadedAcrn) return;
    try {
      download(loadedAcrn.traceExportCsv(model.bytes), `${baseName()}.csv`, 'text/csv');
    } catch (err) {
      showError('export', err);
    }
  });

  // Drag and drop anywhere on the page (the page-dump box handles its own drops).
  const overlay = byId('drop-overlay');
  let depth = 0;
  window.addEventListener('dragenter', (ev) => {
    if (!ev.dataTransfer?.types.includes('Files')) return;
    depth++;
    overlay.hidden = false;
  });
  window.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) overlay.hidden = true;
  });
  window.addEventListener('dragover', (ev) => ev.preventDefault());
  window.addEventListener('drop', (ev) => {
    ev.preventDefault();
    depth = 0;
    overlay.hidden = true;
    const f = ev.dataTransfer?.files[0];
    if (f) void openFile(f);
  });
  window.addEventListener('resize', () => histogram.draw());
}

async function main(): Promise<void> {
  setupInputs();
  setupPageDump();
  try {
    loadedAcrn = await loadAcrn();
  } catch (err) {
    showError('the wasm decoder failed to load', err);
    return;
  }
  document.body.dataset.ready = 'true';
  await openFromUrl();
}

void main();
