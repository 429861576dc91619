// Summarizes benches/c/run-matrix.sh output (JSONL on stdin) as Markdown tables: the median
// over runs of every figure (with the min..max of p50 over runs), and the reference client's
// p50 as a ratio of the floor's (spin for polling; futex, pinned and unpinned, for notify).
import { readFileSync } from 'node:fs';

const rows = readFileSync(0, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (ns) => (ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${Math.round(ns)} ns`);
const floors = rows.filter((r) => r.kind === 'floor');
const floor = {};
console.log(`runs: ${floors.length}; load average at each run: ${rows.map((r) => r.load).join(' ')}\n`);
console.log('| floor | p50 (median; min..max) | p99 | p99.9 | max | count |');
console.log('|---|---|---|---|---|---|');
for (const k of ['spin', 'futex', 'futex_unpinned']) {
  const xs = floors.map((f) => f[k]).filter(Boolean);
  if (!xs.length) continue;
  const p50s = xs.map((x) => x.p50_ns);
  floor[k] = median(p50s);
  console.log(`| ${k} | ${fmt(floor[k])} (${fmt(Math.min(...p50s))}..${fmt(Math.max(...p50s))}) | ${fmt(median(xs.map((x) => x.p99_ns)))} | ${fmt(median(xs.map((x) => x.p999_ns)))} | ${fmt(median(xs.map((x) => x.max_ns)))} | ${xs[0].count} |`);
}
console.log('\n| loop | mode | vCPUs | p50 (median; min..max) | p99 | p99.9 | max | throughput (req/s) | p50 / floor |');
console.log('|---|---|---|---|---|---|---|---|---|');
const groups = new Map();
for (const r of rows.filter((r) => r.kind === 'c_reference')) {
  const key = `${r.loop}|${r.mode}|${r.vcpus}`;
  if (!groups.has(key)) groups.set(key, []);
  groups.get(key).push(r);
}
for (const [key, xs] of groups) {
  const [loop, mode, vcpus] = key.split('|');
  const p50s = xs.map((x) => x.p50_ns);
  const p50 = median(p50s);
  const r = (ref, name) => (ref ? `${(p50 / ref).toFixed(2)}x ${name}` : '');
  const ratio = mode === 'polling' ? r(floor.spin, 'spin') : [r(floor.futex, 'futex'), r(floor.futex_unpinned, 'futex unpinned')].filter(Boolean).join(', ');
  console.log(`| ${loop} | ${mode} | ${vcpus} | ${fmt(p50)} (${fmt(Math.min(...p50s))}..${fmt(Math.max(...p50s))}) | ${fmt(median(xs.map((x) => x.p99_ns)))} | ${fmt(median(xs.map((x) => x.p999_ns)))} | ${fmt(median(xs.map((x) => x.max_ns)))} | ${Math.round(median(xs.map((x) => x.throughput_rps)))} | ${ratio} |`);
}
