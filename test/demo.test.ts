// `acrn-hsm demo`: the main job runs to a clean summary in both completion modes, with the
// TypeScript device served next to the native ones.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runDemo, ScratchDevice } from '../dist/demo.js';

const root = join(import.meta.dirname, '..');
const cli = (...args: string[]) =>
  spawnSync(process.execPath, [join(root, 'bin/acrn-hsm.js'), 'demo', ...args], { encoding: 'utf8' });

describe('acrn-hsm demo', () => {
  for (const mode of ['notify', 'poll'] as const) {
    it(`${mode} mode: every request completed exactly once, every value as expected`, () => {
      const r = cli('--json', '--vcpus', '3', '--requests', '3000', '--mode', mode);
      expect(r.status, r.stderr).toBe(0);
      const s = JSON.parse(r.stdout);
      expect(s.clean).toBe(true);
      expect(s.mode).toBe(mode);
      expect(s.issued).toBeGreaterThanOrEqual(3 * 3000);
      expect(s.completed).toBe(s.issued);
      expect(s.mismatches + s.lost + s.duplicated + s.faults).toBe(0);
      expect(s.uart_output).toContain('hello from the guest');
      const ts = s.devices.find((d: { name: string }) => d.name === 'ts-scratch');
      expect(ts.reads).toBeGreaterThan(0);
      expect(ts.writes).toBeGreaterThan(0);
      expect(s.latency_ns.p50).toBeGreaterThan(0);
      expect(s.latency_ns.p99).toBeGreaterThanOrEqual(s.latency_ns.p50);
    });
  }

  it('the human output shows the guest, the devices and the verdict', () => {
    const r = cli('--vcpus', '2', '--requests', '2000');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/guest> acrn-hsm demo: hello from the guest/);
    expect(r.stdout).toMatch(/ts-scratch\s+\d+ reads/);
    expect(r.stdout).toMatch(/OK: every request completed exactly once/);
  });

  it('the TypeScript device sees the accesses the summary counts', async () => {
    const device = new ScratchDevice();
    const progress: number[] = [];
    const s = await runDemo({ vcpus: 2, requestsPerVcpu: 2000, progressMs: 20 }, (p) => progress.push(p.handled), device);
    const ts = s.devices.find((d) => d.name === 'ts-scratch');
    expect(ts).toBeDefined();
    expect(device.reads).toBe(ts?.reads);
    expect(device.writes).toBe(ts?.writes);
    expect(progress.length).toBeGreaterThan(0);
    expect(s.issued).toBe(s.completed);
  });

  it('a TypeScript device that answers wrongly is caught by the guest', async () => {
    class Wrong extends ScratchDevice {
      override read(offset: number, size: number): bigint {
        return offset === 4 ? 0n : super.read(offset, size);
      }
    }
    const s = await runDemo({ vcpus: 1, requestsPerVcpu: 500 }, () => {}, new Wrong());
    expect(s.mismatches).toBeGreaterThan(0);
    expect(s.completed).toBe(s.issued);
  });

  it('bad options: usage error, exit 2', () => {
    for (const args of [['--vcpus', '17'], ['--mode', 'fast'], ['--seconds', '-1'], ['--bogus']]) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^acrn-hsm: /);
    }
  });
});
