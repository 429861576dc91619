// Smoke test of the C side of the benchmark: scripts/build-bench-c.sh --debug builds the floor
// and the C reference client (over the acrn-hsm-capi C ABI); both run with tiny counts and
// must print well-formed JSON with consistent figures. The full measurement is in
// docs/performance.md, not here.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const bin = join(root, 'target/bench-c/debug');

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function checkLatencies(o: Record<string, number>) {
  for (const k of ['p50_ns', 'p99_ns', 'p999_ns', 'max_ns']) expect(o[k], k).toBeGreaterThan(0);
  expect(o.p50_ns).toBeLessThanOrEqual(o.p99_ns);
  expect(o.p99_ns).toBeLessThanOrEqual(o.p999_ns);
  expect(o.p999_ns).toBeLessThanOrEqual(o.max_ns);
}

describe('C benchmark programs', () => {
  beforeAll(() => {
    const r = run('bash', ['scripts/build-bench-c.sh', '--debug']);
    expect(r.status, r.stderr).toBe(0);
  }, 120_000);

  it('floor measures spin and futex hand-offs', () => {
    const r = run(join(bin, 'floor'), ['--requests', '2000', '--futex-requests', '300', '--warmup', '100', '--table']);
    expect(r.status, r.stderr).toBe(0);
    const o = JSON.parse(r.stdout);
    expect(o.spin.count).toBe(2000);
    expect(o.futex.count).toBe(300);
    checkLatencies(o.spin);
    checkLatencies(o.futex);
    if (o.pinned) checkLatencies(o.futex_unpinned);
    expect(r.stderr).toContain('Percentile');
  });

  for (const [mode, loop] of [['polling', 'attach'], ['notify', 'attach'], ['polling', 'busy']]) {
    it(`reference client, ${mode} mode, ${loop} loop: every request completed and checked`, () => {
      const r = run(join(bin, 'reference_client'), ['--mode', mode, '--loop', loop, '--vcpus', '2', '--requests', '600', '--warmup', '60']);
      expect(r.status, r.stderr).toBe(0);
      const o = JSON.parse(r.stdout);
      expect(o).toMatchObject({ mode, loop, vcpus: 2, requests: 600 });
      checkLatencies(o);
      expect(o.throughput_rps).toBeGreaterThan(0);
    });
  }

  it('reference client rejects a vCPU count the ioreq page cannot hold', () => {
    const r = run(join(bin, 'reference_client'), ['--vcpus', '17']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--vcpus');
  });
});
