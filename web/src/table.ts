// The report table: the rows of `traceReportJson` (the same wasm function the CLI's report
// uses), sortable by any column. Each cell keeps its raw value in `data-value` so sorting and
// tests work on numbers, not on formatted text.
import { TRACE_STAGES, type TraceReport, type TraceReportGroup } from './acrn.js';
import { el } from './dom.js';
import { formatCount, formatNs, formatShare } from './format.js';

interface Column {
  id: string;
  label: string;
  value: (g: TraceReportGroup) => number | string | null;
  show: (g: TraceReportGroup) => string;
}

const COLUMNS: Column[] = [
  { id: 'key', label: 'key', value: (g) => g.key, show: (g) => g.key },
  { id: 'count', label: 'count', value: (g) => g.count, show: (g) => formatCount(g.count) },
  { id: 'share', label: 'share', value: (g) => g.share, show: (g) => formatShare(g.share) },
  { id: 'notok', label: 'not ok', value: (g) => g.count - (g.outcomes.ok ?? 0), show: (g) => (g.count - (g.outcomes.ok ?? 0) ? formatCount(g.count - (g.outcomes.ok ?? 0)) : '') },
  { id: 'min', label: 'min', value: (g) => g.min_ns, show: (g) => formatNs(g.min_ns) },
  { id: 'p50', label: 'p50', value: (g) => g.p50_ns, show: (g) => formatNs(g.p50_ns) },
  { id: 'p99', label: 'p99', value: (g) => g.p99_ns, show: (g) => formatNs(g.p99_ns) },
  { id: 'p999', label: 'p99.9', value: (g) => g.p999_ns, show: (g) => formatNs(g.p999_ns) },
  { id: 'max', label: 'max', value: (g) => g.max_ns, show: (g) => formatNs(g.max_ns) },
  { id: 'mean', label: 'mean', value: (g) => g.stages.total.mean_ns, show: (g) => formatNs(g.stages.total.mean_ns) },
];

/** Sort state: column id and direction; `null` = the report's own order (count, then key). */
export type SortState = { column: string; dir: 'ascending' | 'descending' } | null;

function compare(a: number | string | null, b: number | string | null): number {
  // Unobserved values (null) sort last whatever the direction is handled by the caller.
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  return (a as number) - (b as number);
}

/** Sorts groups by a column; nulls always go last. */
export function sortGroups(groups: TraceReportGroup[], sort: SortState): TraceReportGroup[] {
  if (!sort) return groups;
  const col = COLUMNS.find((c) => c.id === sort.column);
  if (!col) return groups;
  const sign = sort.dir === 'ascending' ? 1 : -1;
  return [...groups].sort((x, y) => {
    const a = col.value(x);
    const b = col.value(y);
    if (a === null || b === null) return a === b ? 0 : a === null ? 1 : -1;
    return sign * compare(a, b) || (x.key < y.key ? -1 : 1);
  });
}

export class ReportTable {
  #sort: SortState = null;
  #report: TraceReport | null = null;
  #selected: string | null = null;
  #stages = false;

  /** Called when a row is selected (its key) or unselected (null). */
  onSelect: (key: string | null) => void = () => {};

  constructor(private readonly table: HTMLTableElement) {}

  show(report: TraceReport): void {
    this.#report = report;
    this.#selected = null;
    this.render();
  }

  /** Shows each group's stages (dispatch, queue, handler, ...) under it, as the CLI's text report does. */
  showStages(on: boolean): void {
    this.#stages = on;
    this.render();
  }

  private render(): void {
    const report = this.#report;
    if (!report) return;
    this.table.replaceChildren();
    this.table.dataset.by = report.by;
    if (this.#selected) this.table.dataset.selected = this.#selected;
    else delete this.table.dataset.selected;
    const head = el('thead');
    const hr = el('tr');
    for (const c of COLUMNS) {
      const th = el('th', 'sortable', c.id === 'key' ? report.by : c.label);
      th.dataset.column = c.id;
      th.scope = 'col';
      th.title = c.id === 'notok' ? 'requests not completed ok (unclaimed, handler error, ...); sort' : `sort by ${c.label}`;
      if (this.#sort?.column === c.id) th.setAttribute('aria-sort', this.#sort.dir);
      th.addEventListener('click', () => this.toggle(c.id));
      hr.append(th);
    }
    head.append(hr);
    const body = el('tbody');
    const maxShare = Math.max(...report.groups.map((g) => g.share), 1e-9);
    for (const g of sortGroups(report.groups, this.#sort)) {
      const tr = el('tr');
      tr.dataset.key = g.key;
      if (g.key === this.#selected) {
        tr.classList.add('selected');
        tr.setAttribute('aria-selected', 'true');
      }
      tr.title = 'click: show these requests in the histogram and the timeline';
      tr.addEventListener('click', () => {
        this.#selected = this.#selected === g.key ? null : g.key;
        this.render();
        this.onSelect(this.#selected);
      });
      for (const c of COLUMNS) {
        const td = el('td', c.id === 'key' ? 'key' : undefined);
        const v = c.value(g);
        td.dataset.column = c.id;
        td.dataset.value = v === null ? '' : String(v);
        if (c.id === 'share') {
          const bar = el('span', 'share-bar');
          bar.style.width = `${Math.max(1, Math.round((g.share / maxShare) * 40))}px`;
          td.append(bar, c.show(g));
        } else {
          td.textContent = c.show(g);
        }
        if (c.id === 'notok' && v) {
          td.className = 'notok';
          td.title = outcomesText(g);
        }
        tr.append(td);
      }
      body.append(tr);
      if (this.#stages) body.append(...stageRows(g));
    }
    this.table.append(head, body);
  }

  /** Click on a header: descending first for numbers (largest on top), ascending for the key. */
  private toggle(column: string): void {
    const first = column === 'key' ? 'ascending' : 'descending';
    if (this.#sort?.column === column) {
      this.#sort = { column, dir: this.#sort.dir === 'ascending' ? 'descending' : 'ascending' };
    } else {
      this.#sort = { column, dir: first };
    }
    this.render();
    // A new order starts at its top.
    this.table.parentElement?.scrollTo({ top: 0 });
  }
}

/** One row per observed stage of a group (the `total` stage is the group's own row). */
function stageRows(g: TraceReportGroup): HTMLTableRowElement[] {
  const rows: HTMLTableRowElement[] = [];
  for (const name of TRACE_STAGES) {
    const st = g.stages[name];
    if (name === 'total' || st.count === 0) continue;
    const tr = el('tr', 'stage');
    tr.dataset.stage = name;
    tr.dataset.parent = g.key;
    const cells: [string, string, number | null][] = [
      ['key', name, null],
      ['count', formatCount(st.count), st.count],
      ['share', '', null],
      ['notok', '', null],
      ['min', formatNs(st.min_ns), st.min_ns],
      ['p50', formatNs(st.p50_ns), st.p50_ns],
      ['p99', formatNs(st.p99_ns), st.p99_ns],
      ['p999', formatNs(st.p999_ns), st.p999_ns],
      ['max', formatNs(st.max_ns), st.max_ns],
      ['mean', formatNs(st.mean_ns), st.mean_ns],
    ];
    for (const [col, text, v] of cells) {
      const td = el('td', col === 'key' ? 'key' : undefined, text);
      td.dataset.column = col;
      td.dataset.value = v === null ? '' : String(v);
      tr.append(td);
    }
    // Stage rows belong to their group's row: a click there must not select anything.
    tr.addEventListener('click', (ev) => ev.stopPropagation());
    rows.push(tr);
  }
  return rows;
}

function outcomesText(g: TraceReportGroup): string {
  return Object.entries(g.outcomes)
    .filter(([k]) => k !== 'ok')
    .map(([k, n]) => `${n} ${k.replace('_', ' ')}`)
    .join(', ');
}
