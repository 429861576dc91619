// The examples run as a user runs them (compiled, `node dist-examples/NAME.js`, importing the
// package by name) and do what they say.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const run = (name: string) => spawnSync(process.execPath, [join(root, 'dist-examples', `${name}.js`)], { encoding: 'utf8', cwd: root });

describe('examples', () => {
  it('uart-console: the guest prints through a TypeScript UART', () => {
    const r = run('uart-console');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('guest: Hello from the guest, through a UART written in TypeScript!\nguest: Bye.\n');
  });

  it('register-device: every value checked, handler errors reported and survived', () => {
    const r = run('register-device');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/guest: 604 requests, 0 wrong values; doorbells rung 200 times/);
    expect(r.stdout).toMatch(/handler errors reported: 2 \(read \+0x80, read \+0x80\)/);
  });

  it('dma-device: the device reads and writes guest RAM, its MSIs (and an irqfd) wake the guest', () => {
    const r = run('dma-device');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^guest: 4 DMA transfers \(160 words\) checked, 0 wrong values, 0 faults$/m);
    expect(r.stdout).toMatch(/^device: 4 descriptors processed; interrupts delivered 4 \(3 INJECT_MSI \+ 1 irqfd\), taken by wait_irq 4$/m);
    expect(r.stdout).toMatch(/^requests: 4 /m);
  });

  it('worker-backend: the synchronous loop in a worker serves every request', () => {
    const r = run('worker-backend');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^10000 requests served by the worker \(10000 handler calls\) in \d+ ms, 0 wrong values$/m);
    expect(r.stdout).toMatch(/guest round trip: p50 [\d.]+ µs, p99 [\d.]+ µs/);
  });
});
