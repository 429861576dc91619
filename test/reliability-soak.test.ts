// The soak test's short version (scripts/soak.mjs; the long run is documented in
// docs/reliability.md): 16 vCPUs at full rate for 10 s, served by a worker's runSync(); every
// request completed exactly once, RSS and open fds flat after the warm-up.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');

describe('reliability: soak (short)', () => {
  it('16 vCPUs for 10 s: nothing lost, memory and fds flat', () => {
    const r = spawnSync(process.execPath, [join(root, 'scripts/soak.mjs'), '--seconds', '10', '--sample-ms', '1000', '--json'], { encoding: 'utf8', timeout: 50_000 });
    expect(r.status, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}');
    expect(s.problems).toEqual([]);
    expect(s.ok).toBe(true);
    expect(s.vcpus).toBe(16);
    expect(s.issued).toBeGreaterThan(100_000);
    expect(s.lost).toBe(0);
    expect(s.completed).toBe(s.issued);
    expect(s.handlerCalls).toBe(s.completed);
    expect(s.fds.growth).toBeLessThanOrEqual(2);
    expect(s.rssMb.growth).toBeLessThanOrEqual(48);
    expect(s.samples).toBeGreaterThanOrEqual(8);
  });

  it('refuses bad options with status 2', () => {
    const r = spawnSync(process.execPath, [join(root, 'scripts/soak.mjs'), '--vcpus', '17'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^soak: /);
  });
});
