// `acrn-hsm bench`: the histogram against exact percentiles, coordinated-omission correction,
// and a smoke run of the whole matrix with tiny counts that must print the documented JSON shape
// (the C references from the fast debug build). The measurement itself is in
// docs/performance.md, not here.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { Histogram } from '../dist/bench/hist.js';
import { parseTable } from '../dist/bench/run.js';
import { workerInbox } from '../dist/bench/worker-run.js';
import { benchCommand } from '../dist/cli-bench.js';

const root = join(import.meta.dirname, '..');
const cDir = join(root, 'target/bench-c/debug');

function exact(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

describe('Histogram', () => {
  it('percentiles within 0.8% of the exact ones (log-normal sample), exact below 256 ns', () => {
    const h = new Histogram();
    const xs: number[] = [];
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 20000; i++) {
      const v = Math.round(Math.exp(4 + 6 * rnd() * rnd()));
      xs.push(v);
      h.recordN(v);
    }
    xs.sort((a, b) => a - b);
    for (const p of [1, 10, 50, 90, 99, 99.9, 100]) {
      const e = exact(xs, p);
      const got = h.valueAt(p);
      expect(got, `p${p}`).toBeGreaterThanOrEqual(e);
      if (e < 256) expect(got).toBe(e);
      else expect((got - e) / e, `p${p}: ${got} vs ${e}`).toBeLessThan(0.008);
    }
    expect(h.total).toBe(20000);
    expect(h.max).toBe(xs[xs.length - 1]);
    expect(h.mean()).toBeCloseTo(xs.reduce((a, b) => a + b, 0) / xs.length, 6);
  });

  it('coordinated-omission correction back-fills the samples a fixed schedule would have taken', () => {
    const h = new Histogram();
    h.recordCorrected(100, 1000); // below the interval: one sample
    h.recordCorrected(10_000, 1000); // 10000, then 9000, 8000, ..., 1000
    expect(h.total).toBe(1 + 10);
    expect(h.valueAt(100)).toBe(10_000);
    const plain = new Histogram();
    plain.recordAll([100, 10_000]);
    expect(plain.total).toBe(2);
  });

  it('prints an HdrHistogram-style table the C parser reads back', () => {
    const h = new Histogram();
    for (let i = 1; i <= 1000; i++) h.recordN(i * 10);
    const t = h.percentileTable('case');
    expect(t).toMatch(/^# case\n\s+Value\(us\)\s+Percentile\s+TotalCount\s+1\/\(1-Percentile\)/);
    expect(t).toContain('#[Mean    =');
    expect(t).toContain('Total count    =         1000]');
    const pts = parseTable(t);
    expect(pts[0]?.percentile).toBe(0);
    expect(pts[pts.length - 1]).toEqual({ percentile: 1, valueNs: 10_000 });
    for (let i = 1; i < pts.length; i++) expect(pts[i]!.valueNs).toBeGreaterThanOrEqual(pts[i - 1]!.valueNs);
  });
});

describe('workerInbox (the worker variants of the bench)', () => {
  const start = (src: string) => new Worker(`const { parentPort } = require('node:worker_threads'); ${src}`, { eval: true });
  it('gives the messages in order, then an error, not a wait, once the worker has exited', async () => {
    const worker = start(`parentPort.postMessage({ a: 1 }); parentPort.postMessage({ b: 2 });`);
    const next = workerInbox(worker, 'test');
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    expect(await next('a')).toEqual({ a: 1 });
    expect(await next('b')).toEqual({ b: 2 });
    // Asked for after the exit (nothing left to wake a wait) and during it.
    await exited;
    await expect(next('c')).rejects.toThrow(/test: the worker ended before c/);
    await expect(next('d')).rejects.toThrow(/before d/);
  });
  it("rejects with the worker's own error", async () => {
    const next = workerInbox(start(`throw new RangeError('boom');`), 'test');
    await expect(next('a')).rejects.toThrow(/boom/);
  });
});

describe('acrn-hsm bench', () => {
  beforeAll(() => {
    if (['floor', 'reference_client', 'kvm_floor'].every((b) => existsSync(join(cDir, b)))) return;
    const r = spawnSync('bash', ['scripts/build-bench-c.sh', '--debug'], { cwd: root, encoding: 'utf8', timeout: 110_000 });
    expect(r.status, r.stderr).toBe(0);
  }, 120_000);

  it('--quick --json with tiny counts: the documented shape, consistent figures, an SVG', async () => {
    process.env.ACRN_HSM_BENCH_C_DIR = cDir;
    const svg = join(mkdtempSync(join(tmpdir(), 'bench-')), 'plot.svg');
    let stdout = '';
    let stderr = '';
    const code = await benchCommand(
      ['--quick', '--json', '--requests', '300', '--vcpus', '1,2', '--runs', '1', '--floor-requests', '2000', '--svg', svg],
      { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) },
    );
    expect(code, stderr).toBe(0);
    const j = JSON.parse(stdout);
    expect(Object.keys(j).sort()).toEqual(['c_reference', 'floor', 'ratio_ranges', 'ratios', 'results']);
    expect(j.floor.spin_p50_ns).toBeGreaterThan(0);
    expect(j.floor.futex_p50_ns).toBeGreaterThan(0);
    for (const mode of ['poll', 'notify']) {
      for (const v of ['1', '2']) {
        const c = j.c_reference[mode][v];
        expect(c.p50_ns).toBeGreaterThan(0);
        expect(c.throughput_rps).toBeGreaterThan(0);
        expect(c.loop).toBe(mode === 'poll' ? 'busy' : 'attach');
      }
    }
    expect(j.results).toHaveLength(3 * 2 * 2);
    for (const r of j.results) {
      expect(Object.keys(r).sort()).toEqual(['max_ns', 'mode', 'p50_ns', 'p999_ns', 'p99_ns', 'path', 'throughput_rps', 'vcpus']);
      expect(['native', 'js-sync', 'js-async']).toContain(r.path);
      expect(r.p50_ns).toBeGreaterThan(0);
      expect(r.p50_ns).toBeLessThanOrEqual(r.p99_ns);
      expect(r.p99_ns).toBeLessThanOrEqual(r.p999_ns);
      expect(r.p999_ns).toBeLessThanOrEqual(r.max_ns);
      expect(r.throughput_rps).toBeGreaterThan(0);
    }
    const nat = j.results.find((r: { path: string; mode: string; vcpus: number }) => r.path === 'native' && r.mode === 'poll' && r.vcpus === 1);
    const names = ['js_async_vs_c', 'js_sync_vs_c', 'js_sync_vs_floor', 'native_vs_c', 'native_vs_floor', 'notify_vs_futex', 'throughput_vs_c'];
    expect(Object.keys(j.ratios).sort()).toEqual(names);
    expect(Object.keys(j.ratio_ranges).sort()).toEqual(names);
    // One run: the pairwise median is that run's ratio, and its range a single point.
    // The floor ratios divide by the run's median of three spin floors (spin_ref_p50_ns).
    expect(j.floor.spin_ref_p50_ns).toBeGreaterThan(0);
    expect(j.ratios.native_vs_floor).toBeCloseTo(nat.p50_ns / j.floor.spin_ref_p50_ns, 2);
    expect(j.ratios.native_vs_c).toBeCloseTo(nat.p50_ns / j.c_reference.poll['1'].p50_ns, 2);
    for (const n of names) {
      expect(j.ratios[n]).toBeGreaterThan(0);
      expect(j.ratio_ranges[n]).toEqual([j.ratios[n], j.ratios[n]]);
    }
    const plot = readFileSync(svg, 'utf8');
    expect(plot).toMatch(/^<svg /);
    expect(plot.match(/<path /g)?.length).toBe(4 * 2 * 2);
  }, 60_000);

  it('--guest --json: one round of a few iterations, the documented shape (skipped where KVM is unusable)', async () => {
    process.env.ACRN_HSM_BENCH_C_DIR = cDir;
    let stdout = '';
    let stderr = '';
    const code = await benchCommand(['--guest', '--json', '--runs', '1', '--guest-iterations', '20'], { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
    expect(code, stderr).toBe(0);
    const g = JSON.parse(stdout).guest;
    if (g.skipped) {
      console.log(`SKIP bench --guest: ${g.skipped}`);
      return;
    }
    if (g.skipped_variants.qemu) console.log(`bench --guest: qemu skipped: ${g.skipped_variants.qemu}`);
    expect(g.iterations).toBe(20);
    expect(g.tsc_hz).toBeGreaterThan(1e8);
    const variants = ['native', 'js-sync', 'js-async', 'kvm-c', ...(g.skipped_variants.qemu ? [] : ['qemu'])].sort();
    for (const mode of ['poll', 'notify']) {
      const rs = g.results.filter((r: { mode: string }) => r.mode === mode);
      expect(rs.map((r: { variant: string }) => r.variant).sort()).toEqual(variants);
      for (const r of rs) {
        expect(r.pair_cycles, `${r.variant} ${mode}`).toBeGreaterThan(0);
        expect(r.pair_ns_range).toEqual([r.pair_ns, r.pair_ns]);
      }
      const names = ['guest_pio_js_async_vs_qemu', 'guest_pio_js_vs_native', 'guest_pio_js_vs_qemu', 'guest_pio_native_vs_kvm_c', 'guest_pio_native_vs_qemu'];
      expect(Object.keys(g.ratios[mode]).sort()).toEqual(names);
      for (const n of names) {
        if (n.endsWith('_qemu') && g.skipped_variants.qemu) expect(g.ratios[mode][n]).toBeNull();
        else {
          expect(g.ratios[mode][n], n).toBeGreaterThan(0);
          expect(g.ratio_ranges[mode][n]).toEqual([g.ratios[mode][n], g.ratios[mode][n]]);
        }
      }
    }
  }, 60_000);

  it('--virtio --json: one round of a few reads, the documented shape (skipped without KVM, SeaBIOS or QEMU)', async () => {
    let stdout = '';
    let stderr = '';
    const code = await benchCommand(['--virtio', '--json', '--runs', '1', '--virtio-reads', '8', '--virtio-latency-reads', '8'], { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
    expect(code, stderr).toBe(0);
    const g = JSON.parse(stdout).virtio_blk;
    if (g.skipped) {
      console.log(`SKIP bench --virtio: ${g.skipped}`);
      return;
    }
    expect(g.big_reads).toBe(8);
    expect(g.big_bytes).toBe(32768);
    expect(g.small_bytes).toBe(4096);
    expect(g.qemu_command).toMatch(/virtio-blk-pci,drive=d0,disable-legacy=on/);
    for (const mode of ['poll', 'notify']) {
      const rs = g.results.filter((r: { mode: string }) => r.mode === mode);
      expect(rs.map((r: { variant: string }) => r.variant).sort()).toEqual(['js', 'native', 'native-ioeventfd', 'native-kvm-ioeventfd', 'qemu']);
      for (const r of rs) {
        expect(r.throughput_mb_s, `${r.variant} ${mode}`).toBeGreaterThan(0);
        expect(r.lat_4k_p50_us).toBeGreaterThan(0);
      }
      for (const v of ['native', 'native_ioeventfd', 'native_kvm_ioeventfd', 'js']) {
        for (const n of [`virtio_blk_read_${v}_vs_qemu`, `virtio_blk_4k_latency_${v}_vs_qemu`]) {
          expect(g.ratios[mode][n], n).toBeGreaterThan(0);
          expect(g.ratio_ranges[mode][n]).toEqual([g.ratios[mode][n], g.ratios[mode][n]]);
        }
      }
    }
    expect(g.skipped_variants).toEqual({});
    expect(g.per_round.length).toBe(10);
  }, 240_000);

  it('rejects bad options with a usage error', async () => {
    let stderr = '';
    await expect(benchCommand(['--vcpus', '17'], { stdout: () => {}, stderr: (s) => (stderr += s) })).rejects.toThrow(/--vcpus/);
    await expect(benchCommand(['--paths', 'java'], { stdout: () => {}, stderr: () => {} })).rejects.toThrow(/--paths/);
    await expect(benchCommand(['--guest', '--guest-iterations', '9000'], { stdout: () => {}, stderr: () => {} })).rejects.toThrow(/--guest-iterations/);
    await expect(benchCommand(['--virtio', '--virtio-reads', '0'], { stdout: () => {}, stderr: () => {} })).rejects.toThrow(/--virtio-reads/);
    expect(stderr).toBe('');
  });
});
