// The CLI: its commands, and one-line errors with a non-zero status on bad input.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeIoRequest } from '../dist/index.js';

const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'acrn-cli-'));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [join(root, 'bin/acrn-hsm.js'), ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function page(): Uint8Array {
  const p = new Uint8Array(4096);
  const dv = new DataView(p.buffer);
  for (let i = 0; i < 16; i++) dv.setUint32(i * 256 + 136, 3, true);
  p.set(encodeIoRequest({ type: 'pio', state: 'processing', direction: 'write', address: 0x3f8n, size: 1, value: 0x41, kernelHandled: false, completionPolling: false }), 0);
  p.set(encodeIoRequest({ type: 'mmio', state: 'pending', direction: 'read', address: 0xfed00000n, size: 8, value: 0n, kernelHandled: false, completionPolling: true }), 256);
  p.set(encodeIoRequest({ type: 'pci', state: 'complete', direction: 'read', size: 4, value: 0x12348086, bus: 0, device: 3, function: 0, register: 0, kernelHandled: false, completionPolling: false }), 512);
  dv.setUint32(3 * 256 + 136, 7, true);
  return p;
}

describe('acrn-hsm CLI', () => {
  it('abi prints the human table', () => {
    const r = cli('abi');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/acrn_io_request\s+size\s+256\s+align\s+256/);
    expect(r.stdout).toMatch(/ACRN_IOCTL_CREATE_VM\s+0xc030a210/);
  });

  it('decode FILE shows the 16 slots, with the bad one reported in place', () => {
    const f = join(dir, 'page.bin');
    writeFileSync(f, page());
    const r = cli('decode', f);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(17);
    expect(lines[1]).toMatch(/^0\s+PROCESSING\s+PIO\s+write\s+0x3f8\s+1\s+0x41/);
    expect(lines[2]).toMatch(/^1\s+PENDING\s+MMIO\s+read\s+0xfed00000\s+8\s+0x0\s+polling/);
    expect(lines[3]).toMatch(/^2\s+COMPLETE\s+PCI\s+read\s+00:03\.0 reg 0x000\s+4\s+0x12348086/);
    expect(lines[4]).toMatch(/^\s*3\s+ERROR ERR_UNKNOWN_STATE/);
    expect(lines[5]).toMatch(/^4\s+FREE/);
  });

  it('decode --json keeps u64 values exact', () => {
    const p = page();
    new DataView(p.buffer).setBigUint64(256 + 88, 0xffff_ffff_ffff_fff1n, true);
    const f = join(dir, 'page2.bin');
    writeFileSync(f, p);
    const r = cli('decode', f, '--json');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('"value": 18446744073709551601');
    const parsed = JSON.parse(r.stdout) as Array<{ slot: number; error?: { code: string } }>;
    expect(parsed).toHaveLength(16);
    expect(parsed[3]?.error?.code).toBe('ERR_UNKNOWN_STATE');
  });

  it('bad input: one line on stderr, non-zero status, no stack trace', () => {
    const short = join(dir, 'short.bin');
    writeFileSync(short, new Uint8Array(100));
    for (const [args, status] of [
      [['decode', short], 1],
      [['decode', join(dir, 'missing.bin')], 1],
      [['decode'], 2],
      [['abi', '--bogus'], 2],
      [['frobnicate'], 2],
    ] as const) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).toBe(status);
      expect(r.stderr.trim().split('\n').length, r.stderr).toBeLessThanOrEqual(2);
      expect(r.stderr).toMatch(/^acrn-hsm: /);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(cli('decode', short).stderr).toMatch(/100 bytes.*4096/);
  });

  it('info reports the device and the emulator', () => {
    const r = cli('info', '--json');
    expect(r.status).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.device.path).toBe('/dev/acrn_hsm');
    expect(typeof info.device.present).toBe('boolean');
    expect(info.nativeAddon.available).toBe(true);
  });
});
