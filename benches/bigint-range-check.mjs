// What the range check of a TypeScript device's 64-bit read costs (ts/client.ts, storeRead):
// `v >= 0n && v <= 2n ** 64n - 1n` against `BigInt.asUintN(64, v) === v`, and no check at all,
// each around the same device read and store as the client's loop does. ns per read, three
// rounds. `node benches/bigint-range-check.mjs`
const regs = new BigUint64Array(64);
regs[0] = 0x1122_3344_5566_7700n;
const responses = new BigUint64Array(16);
const ALL_ONES = 0xffff_ffff_ffff_ffffn;
const device = { read: (offset) => regs[offset >> 3] ?? 0n };

function compare(k) {
  const v = device.read(0);
  responses[k] = typeof v === 'bigint' && v >= 0n && v <= ALL_ONES ? v : ALL_ONES;
}
function asUintN(k) {
  const v = device.read(0);
  responses[k] = typeof v === 'bigint' && BigInt.asUintN(64, v) === v ? v : ALL_ONES;
}
function unchecked(k) {
  responses[k] = device.read(0);
}

const N = 20_000_000;
for (let round = 1; round <= 3; round++) {
  const line = [];
  for (const [name, f] of [['comparisons', compare], ['asUintN', asUintN], ['no check', unchecked]]) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) f(i & 15);
    line.push(`${name} ${(Number(process.hrtime.bigint() - t) / N).toFixed(2)} ns`);
  }
  console.log(`round ${round}: ${line.join(', ')}`);
}
