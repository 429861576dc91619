// The decoded fields of one request (trace.record(i)) and its stage durations.
import { pciFields, TRACE_STAMPS, type TraceRecord } from './acrn.js';
import { el } from './dom.js';
import { formatNs, hex } from './format.js';
import type { Model } from './model.js';
import { STAGE_COLOURS, STAGE_NAMES } from './timeline.js';

/** The address as the report keys it: port/GPA in hex, PCI as bb:dd.f@0xreg. */
export function addressText(rec: TraceRecord): string {
  if (rec.type !== 'pci') return hex(rec.address);
  const f = pciFields(rec.address);
  const h2 = (n: number) => n.toString(16).padStart(2, '0');
  return `${h2(f.bus)}:${h2(f.device)}.${f.function}@${hex(f.register)}`;
}

export function showDetails(panel: HTMLElement, model: Model, index: number): void {
  panel.replaceChildren();
  if (index < 0) {
    delete panel.dataset.index;
    panel.append(el('p', 'muted', 'No request there. Click a coloured bar (zoom in to pick one request).'));
    return;
  }
  const rec = model.trace.record(index);
  panel.dataset.index = String(index);
  const dl = el('dl');
  const row = (k: string, v: string | Node, field: string) => {
    const dd = el('dd');
    dd.dataset.field = field;
    if (typeof v === 'string') dd.textContent = v;
    else dd.append(v);
    dl.append(el('dt', undefined, k), dd);
  };
  const outcome = el('span', rec.outcome === 'ok' ? 'tag' : 'tag bad', rec.outcome);
  row('record', `#${index}`, 'index');
  row('vCPU', String(rec.vcpu), 'vcpu');
  row('type', `${rec.type.toUpperCase()} ${rec.direction}`, 'type');
  row('address', addressText(rec), 'address');
  row('size', `${rec.size} byte${rec.size === 1 ? '' : 's'}`, 'size');
  row('value', hex(rec.value), 'value');
  row('device', rec.deviceName ?? '(none)', 'device');
  row('outcome', outcome, 'outcome');
  const total = model.total[index] as number;
  row('latency', formatNs(Number.isNaN(total) ? null : total), 'latency');
  panel.append(dl);

  panel.append(el('h3', undefined, 'Stages'));
  const stages = el('table');
  for (let s = 1; s < 7; s++) {
    const a = model.stamps[index * 7 + s - 1] as number;
    const b = model.stamps[index * 7 + s] as number;
    const tr = el('tr');
    const name = el('td');
    const sw = el('span', 'sw');
    sw.style.cssText = `display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:6px;background:${STAGE_COLOURS[s - 1]}`;
    name.append(sw, STAGE_NAMES[s - 1] as string);
    tr.append(name, el('td', 'num', Number.isNaN(a) || Number.isNaN(b) ? '-' : formatNs(b - a)));
    stages.append(tr);
  }
  panel.append(stages);

  panel.append(el('h3', undefined, 'Timestamps (ns since clock start)'));
  const ts = el('table');
  TRACE_STAMPS.forEach((s, k) => {
    const v = model.stamps[index * 7 + k] as number;
    const tr = el('tr');
    const td = el('td', 'num', Number.isNaN(v) ? 'not observed' : String(v));
    td.dataset.stamp = s;
    tr.append(el('td', undefined, s), td);
    ts.append(tr);
  });
  panel.append(ts);
}
