// The ioreq page decoder: 4096 bytes (pasted as hex or dropped as a file) → the 16 slots,
// through decodeIoreqPage of the same wasm module.
import { AcrnHsmError, type IoreqSlot } from './acrn.js';
import { el } from './dom.js';
import { hex } from './format.js';
import { loadAcrn } from './acrn.js';

const PAGE = 4096;

/**
 * Hex text to bytes. Accepts plain hex with any whitespace, `0x` prefixes, commas, and
 * `xxd`/`hexdump -C` lines (the offset column and the ASCII column are dropped).
 */
export function parseHex(text: string): Uint8Array {
  const lines = text.split(/\r?\n/).map((line) => {
    let l = line.replace(/\|.*\|\s*$/, ''); // hexdump -C ASCII column
    l = l.replace(/^\s*[0-9a-fA-F]{4,}:\s?/, ''); // xxd offset
    l = l.replace(/^\s*[0-9a-fA-F]{7,8}\s+(?=[0-9a-fA-F]{2}\s)/, ''); // hexdump offset
    const xxdAscii = /^((?:[0-9a-fA-F]{4}\s){1,8})\s+\S.*$/.exec(l); // xxd: 8 groups then text
    return xxdAscii ? (xxdAscii[1] as string) : l;
  });
  const digits = lines.join(' ').replace(/0x/gi, '').replace(/[\s,;:]/g, '');
  if (!/^[0-9a-fA-F]*$/.test(digits)) throw new AcrnHsmError('ERR_INVALID_ARG', 'the text has characters that are not hex digits');
  if (digits.length % 2) throw new AcrnHsmError('ERR_INVALID_ARG', `odd number of hex digits (${digits.length})`);
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function slotRow(s: IoreqSlot): HTMLTableRowElement {
  const tr = el('tr');
  tr.dataset.slot = String(s.slot);
  const cells: string[] = [String(s.slot)];
  if (s.request) {
    const r = s.request;
    const where = r.type === 'pci' ? `${r.bus.toString(16).padStart(2, '0')}:${r.device.toString(16).padStart(2, '0')}.${r.function}@${hex(r.register)}` : hex(r.address);
    cells.push(r.state, r.type.toUpperCase(), r.direction, String(r.size), where, hex(r.value), [r.kernelHandled ? 'kernel' : '', r.completionPolling ? 'polling' : ''].filter(Boolean).join(' ') || '-');
  } else {
    cells.push('error', '', '', '', '', '', `${s.error.code}: ${s.error.message}`);
  }
  cells.forEach((c, i) => {
    const td = el('td', i === 7 && !s.request ? 'err' : undefined, c);
    tr.append(td);
  });
  return tr;
}

export function setupPageDump(): void {
  const area = document.getElementById('page-hex') as HTMLTextAreaElement;
  const errBox = document.getElementById('page-error') as HTMLElement;
  const table = document.getElementById('page-slots') as HTMLTableElement;
  const file = document.getElementById('page-file') as HTMLInputElement;
  const details = document.getElementById('page-dump') as HTMLDetailsElement;

  const fail = (e: unknown) => {
    table.replaceChildren();
    errBox.hidden = false;
    errBox.textContent = e instanceof AcrnHsmError ? `${e.code}: ${e.message}` : String(e instanceof Error ? e.message : e);
  };
  const decode = async (bytes: Uint8Array) => {
    try {
      if (bytes.length !== PAGE) throw new AcrnHsmError('ERR_INVALID_ARG', `an ioreq page is ${PAGE} bytes; this is ${bytes.length}`);
      const acrn = await loadAcrn();
      const slots = acrn.decodeIoreqPage(bytes);
      errBox.hidden = true;
      table.replaceChildren();
      const head = el('tr');
      for (const h of ['slot', 'state', 'type', 'dir', 'size', 'address', 'value', 'flags']) head.append(el('th', undefined, h));
      const thead = el('thead');
      thead.append(head);
      const body = el('tbody');
      for (const s of slots) body.append(slotRow(s));
      table.append(thead, body);
      table.dataset.slots = String(slots.length);
    } catch (e) {
      fail(e);
    }
  };
  const fromText = () => {
    try {
      void decode(parseHex(area.value));
    } catch (e) {
      fail(e);
    }
  };
  document.getElementById('page-decode')?.addEventListener('click', fromText);
  file.addEventListener('change', async () => {
    const f = file.files?.[0];
    if (f) await decode(new Uint8Array(await f.arrayBuffer()));
    file.value = '';
  });
  // A file dropped on the text area is a page dump, not a trace (the page-level drop handler
  // sees it as handled).
  area.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    ev.stopPropagation();
    area.classList.add('dragover');
  });
  area.addEventListener('dragleave', () => area.classList.remove('dragover'));
  area.addEventListener('drop', async (ev) => {
    ev.preventDefault();
    ev.stopPropagation();
    area.classList.remove('dragover');
    const f = ev.dataTransfer?.files[0];
    if (f) {
      details.open = true;
      await decode(new Uint8Array(await f.arrayBuffer()));
    }
  });
}
