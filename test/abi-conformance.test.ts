// The ABI as the CLI and the TS API report it must equal, value for value, what gcc computes
// from the system's <linux/acrn.h> (test/conformance/abi.c is the oracle).
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { abi } from '../dist/index.js';
import * as wasm from '../dist/wasm/node.js';

const root = join(import.meta.dirname, '..');

function gccAbi(): { json: string; parsed: Record<string, Record<string, unknown>> } {
  const dir = mkdtempSync(join(tmpdir(), 'acrn-abi-'));
  const exe = join(dir, 'abi');
  execFileSync('gcc', ['-std=c11', '-Wall', '-Werror', '-o', exe, join(root, 'test/conformance/abi.c')]);
  const json = execFileSync(exe, { encoding: 'utf8' });
  return { json, parsed: JSON.parse(json) };
}

describe('ABI against gcc and /usr/include/linux/acrn.h', () => {
  const oracle = gccAbi();

  it('`acrn-hsm abi --json` equals the gcc oracle value for value', () => {
    const cli = execFileSync(process.execPath, [join(root, 'bin/acrn-hsm.js'), 'abi', '--json'], { encoding: 'utf8' });
    expect(JSON.parse(cli)).toEqual(oracle.parsed);
  });

  it('the oracle is not trivially empty', () => {
    expect(Object.keys(oracle.parsed.structs ?? {}).length).toBeGreaterThanOrEqual(20);
    expect(Object.keys(oracle.parsed.ioctls ?? {}).length).toBeGreaterThanOrEqual(27);
    expect(oracle.parsed.structs).toHaveProperty('acrn_io_request.fields.processed', 136);
  });

  it('the TS `abi` object (native and wasm) carries the same tables', () => {
    const tables = { structs: abi.structs, ioctls: abi.ioctls, constants: abi.constants };
    expect(tables).toEqual(oracle.parsed);
    expect({ structs: wasm.abi.structs, ioctls: wasm.abi.ioctls, constants: wasm.abi.constants }).toEqual(oracle.parsed);
  });

  it('short ioctl names and the documented numbers', () => {
    expect(abi.ioctl.CREATE_VM).toBe(0xc030a210);
    expect(abi.ioctl.SET_VCPU_REGS).toBe(0x4128a216);
    expect(abi.ioctl.NOTIFY_REQUEST_FINISH).toBe(0x4008a231);
    expect(abi.ioctl.ATTACH_IOREQ_CLIENT).toBe(0x0000a233);
    expect(abi.ioctl.SET_MEMSEG).toBe(0x4020a241);
    expect(abi.structs.acrn_io_request).toMatchObject({ size: 256, align: 256 });
    expect(abi.structs.acrn_io_request?.fields['reqs.mmio_request.value']).toBe(88);
    expect(abi.constants.ACRN_IOREQ_STATE_FREE).toBe(3);
  });
});
