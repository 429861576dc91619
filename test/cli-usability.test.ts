// The tool as people use it (issue 17): pipes, help from the option tables, errors with
// advice, refusals with a reason, trace reports and exports.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { AcrnHsmError, encodeIoRequest, encodeTrace, Hsm, PciFunction, pciAddress, pciFields, stopClient, Vm, type ServedRequest } from '../dist/index.js';
import { main } from '../dist/cli.js';
import { parseCommand, UsageError, type CommandSpec } from '../dist/cli-args.js';

const root = join(import.meta.dirname, '..');
const bin = join(root, 'bin/acrn-hsm.js');
const dir = mkdtempSync(join(tmpdir(), 'acrn-cli-use-'));

type Result = { status: number; stdout: string; stderr: string };

async function run(...args: string[]): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const status = await main(args, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { status, stdout, stderr };
}

/** Spawns the bin; with `closedStdout`, the reading end of its stdout is closed at once. */
function spawnBin(
  args: string[],
  opts: { closedStdout?: boolean; timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string; script?: string } = {},
): Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number; timedOut: boolean }> {
  const t0 = Date.now();
  const argv = opts.script !== undefined ? ['--input-type=module', '-e', opts.script] : [bin, ...args];
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env }, cwd: opts.cwd });
  let stdout = '';
  let stderr = '';
  if (opts.closedStdout) child.stdout.destroy();
  else child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? 15_000);
  return new Promise((done) => {
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      done({ status, signal, stdout, stderr, ms: Date.now() - t0, timedOut });
    });
  });
}

function sampleTrace(): Uint8Array {
  const recs = [];
  for (let i = 0; i < 600; i++) {
    const vcpu = i % 3;
    // vCPU 2's requests are few but slow: they lead by time, not by count.
    const slow = vcpu === 2 && i % 2 === 0;
    if (vcpu === 2 && !slow) continue;
    const t = BigInt(1_000_000 + i * 10_000);
    const total = slow ? 40_000n : BigInt(500 + (i % 7) * 100);
    recs.push({
      vcpu,
      type: (slow ? 'mmio' : 'pio') as 'mmio' | 'pio',
      direction: 'write' as const,
      size: 4,
      device: 0,
      address: slow ? 0xfed00000n : BigInt(0x3f8 + (i % 4)),
      value: BigInt(i),
      timestamps: { pending: t, processing: t + 100n, handler_start: t + 150n, handler_end: t + 250n, notify: t + 300n, complete: t + total - 50n, free: t + total },
    });
  }
  return encodeTrace(
    { clock: { startNs: 1_000_000n }, vm: { name: 'use', vmid: 1, vcpuCount: 3 }, devices: [{ id: 0, name: 'dev', kind: 'pio', base: 0x3f8n, length: 8n }] },
    recs,
  );
}

const traceFile = join(dir, 'use.trace');
writeFileSync(traceFile, sampleTrace());
const pageFile = join(dir, 'page.bin');
{
  const p = new Uint8Array(4096);
  const dv = new DataView(p.buffer);
  for (let i = 0; i < 16; i++) dv.setUint32(i * 256 + 136, 3, true);
  p.set(encodeIoRequest({ type: 'pio', state: 'processing', direction: 'write', address: 0x3f8n, size: 1, value: 0x41, kernelHandled: false, completionPolling: false }), 0);
  writeFileSync(pageFile, p);
}

async function specs(): Promise<CommandSpec[]> {
  const [cli, demo, bench, trace, view, run] = await Promise.all([
    import('../dist/cli.js'),
    import('../dist/cli-demo.js'),
    import('../dist/cli-bench.js'),
    import('../dist/cli-trace.js'),
    import('../dist/cli-view.js'),
    import('../dist/cli-run.js'),
  ]);
  return [cli.ABI_SPEC, cli.DECODE_SPEC, cli.INFO_SPEC, demo.DEMO_SPEC, bench.BENCH_SPEC, run.RUN_SPEC, trace.REPORT_SPEC, trace.EXPORT_SPEC, view.VIEW_SPEC, trace.REPLAY_SPEC];
}

describe('pipes: a closed stdout ends the command quietly', () => {
  for (const args of [['abi'], ['info'], ['decode', pageFile], ['trace', 'report', traceFile], ['trace', 'export', traceFile, '--format', 'csv', '-o', '-'], ['demo', '--requests', '200'], ['demo', '--requests', '200000', '--vcpus', '2']]) {
    it(`${args.join(' ')} | (closed)`, async () => {
      const r = await spawnBin(args, { closedStdout: true, timeoutMs: 20_000 });
      expect(r.timedOut, `${args.join(' ')} hung (${r.ms} ms): ${r.stderr}`).toBe(false);
      expect([0, 141], r.stderr).toContain(r.status);
      expect(r.stderr).not.toMatch(/EPIPE|Unhandled|internal error|\n\s+at /);
    });
  }
});

describe('exit with a request pending', () => {
  it('a process whose vCPU waits on a request no client serves exits at process.exit()', async () => {
    const script = `
      import { Hsm } from ${JSON.stringify(join(root, 'dist/index.js'))};
      const hsm = Hsm.emulated();
      const vm = hsm.createVm({ vcpuNum: 2 });
      vm.createIoreqClient();
      vm.start();
      hsm.guest(vm).run({ vcpus: [[{ pio: 0x70, size: 1, read: true }], [{ mmio: 0xfed00000n, size: 4, read: true }]] }).catch(() => {});
      setTimeout(() => { process.stdout.write('exiting\\n'); process.exit(7); }, 300);
    `;
    const r = await spawnBin([], { script, timeoutMs: 10_000 });
    expect(r.timedOut, `hung at process.exit (${r.ms} ms)`).toBe(false);
    expect(r.stdout).toBe('exiting\n');
    expect(r.status).toBe(7);
  });
});

describe('exit hook only at the process exit', () => {
  it("a worker's exit does not shut down the main thread's emulator", async () => {
    const { Worker } = await import('node:worker_threads');
    const script = join(dir, 'worker.mjs');
    // The worker's 'exit' listeners run as at its end (emitted by hand: at a worker's real end
    // Node may no longer call into the addon, which would hide a listener that should not be).
    writeFileSync(script, `import { Hsm } from ${JSON.stringify(join(root, 'dist/index.js'))};\nHsm.emulated().createVm({ vcpuNum: 1 });\nprocess.emit('exit', 0);\n`);
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient();
    client.pio(0x600, 4, { read: () => 5, write: () => {} });
    const w = new Worker(script);
    await new Promise((done) => w.once('exit', done));
    const serving = client.run();
    vm.start();
    const r = await hsm.guest(vm).run({ vcpus: [[{ pio: 0x600, size: 4, read: true, expect: 5 }]] });
    client.stop();
    await serving;
    expect(r).toMatchObject({ issued: 1, completed: 1, mismatches: [] });
  });
});

describe('help from the option tables', () => {
  it('every subcommand: --help exits 0 and lists every option it accepts; an unlisted one is a usage error naming the subcommand', async () => {
    for (const spec of await specs()) {
      const r = await run(...spec.name.split(' '), '--help');
      expect(r.status, spec.name).toBe(0);
      expect(r.stdout, spec.name).toMatch(new RegExp(`^usage: acrn-hsm ${spec.name}`));
      const listed = [...r.stdout.matchAll(/^\s+(?:-\w, )?--([a-z][a-z0-9-]*)/gm)].map((m) => m[1]);
      expect(new Set(listed), spec.name).toEqual(new Set([...spec.options.map((o) => o.name), 'help']));
      // What the help lists, the parser accepts (with a value where it takes one)...
      for (const o of spec.options) {
        const args = o.type === 'string' ? [`--${o.name}`, 'x'] : [`--${o.name}`];
        try {
          parseCommand(spec, [...args, ...Array(spec.positionalCount?.[0] ?? 0).fill('F')]);
        } catch (err) {
          expect(String(err), `${spec.name} --${o.name}`).not.toMatch(/Unknown option/);
        }
      }
      // ...and nothing else.
      const bad = await run(...spec.name.split(' '), '--not-an-option');
      expect(bad.status, spec.name).toBe(2);
      expect(bad.stderr, spec.name).toMatch(new RegExp(`\\nusage: acrn-hsm ${spec.name} `));
      expect(() => parseCommand(spec, ['--not-an-option'])).toThrow(UsageError);
    }
  });

  it('the top-level help lists every command; --version prints the package version', async () => {
    const h = await run('--help');
    expect(h.status).toBe(0);
    for (const spec of await specs()) expect(h.stdout).toContain(`  ${spec.name}`);
    const v = await run('--version');
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    expect(v).toMatchObject({ status: 0, stdout: `acrn-hsm ${pkg.version}\n` });
  });

  it('demo --help says --requests is per vCPU and --seconds a cap', async () => {
    const r = await run('demo', '--help');
    expect(r.stdout).toMatch(/--requests N\s+requests per vCPU/);
    expect(r.stdout).toMatch(/--seconds S\s+a cap/);
  });

  it('a bad value is a usage error with the subcommand usage line', async () => {
    const r = await run('demo', '--vcpus', '99');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^acrn-hsm: demo: --vcpus must be an integer in 1\.\.16, got '99'\nusage: acrn-hsm demo \[--vcpus N\]/);
  });
});

describe('trace report and export', () => {
  it('report: Time% column, --sort time, --top, --vcpu, µs', async () => {
    const all = await run('trace', 'report', traceFile, '--by', 'vcpu');
    expect(all.status, all.stderr).toBe(0);
    expect(all.stdout).toMatch(/Samples\s+Samples%\s+Time%/);
    expect(all.stdout).toMatch(/µs/);
    expect(all.stdout).not.toMatch(/\dus\b/);
    const rows = (s: string) => s.split('\n').filter((l) => /^vcpu\d/.test(l));
    // By count vCPU 2 is last; by time (its requests are slow) first.
    expect(rows(all.stdout).at(-1)).toMatch(/^vcpu2/);
    const byTime = await run('trace', 'report', traceFile, '--by', 'vcpu', '--sort', 'time');
    expect(rows(byTime.stdout)[0]).toMatch(/^vcpu2/);
    const share = Number(/^vcpu2\s+\d+\s+[\d.]+%\s+([\d.]+)%/m.exec(byTime.stdout)?.[1]);
    expect(share).toBeGreaterThan(50);
    const top = await run('trace', 'report', traceFile, '--top', '2');
    expect(top.stdout.split('\n').filter((l) => /^0x/.test(l))).toHaveLength(2);
    expect(top.stdout).toMatch(/3 more rows not shown/);
    const one = await run('trace', 'report', traceFile, '--vcpu', '1', '--json');
    const rep = JSON.parse(one.stdout) as { requests: number };
    expect(rep.requests).toBe(200);
    const bad = await run('trace', 'report', traceFile, '--sort', 'nope');
    expect(bad.status).toBe(2);
  });

  it('export -o - writes to stdout (no file named -), with a vCPU and time subset; the same through wasm', async () => {
    for (const backend of ['native', 'wasm']) {
      const env = backend === 'wasm' ? { ACRN_HSM_TRACE_BACKEND: 'wasm' } : {};
      const r = await spawnBin(['trace', 'export', traceFile, '--format', 'chrome', '-o', '-', '--vcpu', '1', '--from', '1ms', '--to', '3ms'], { cwd: dir, env });
      expect(r.status, r.stderr).toBe(0);
      expect(existsSync(join(dir, '-'))).toBe(false);
      const v = JSON.parse(r.stdout) as { traceEvents: { ph: string; tid?: number; ts?: number; cat?: string }[]; otherData: { exported: number } };
      const x = v.traceEvents.filter((e) => e.ph === 'X');
      expect(x.length, backend).toBeGreaterThan(10);
      expect(x.every((e) => e.tid === 1 && (e.ts ?? -1) >= 1000 && (e.ts ?? 1e9) < 3000 && e.cat === 'ioreq'), backend).toBe(true);
      expect(v.otherData.exported).toBe(x.length);
    }
    const full = join(dir, 'full.json');
    const compact = join(dir, 'compact.json');
    expect((await run('trace', 'export', traceFile, '--format', 'chrome', '-o', full, '--stages')).status).toBe(0);
    expect((await run('trace', 'export', traceFile, '--format', 'chrome', '-o', compact)).status).toBe(0);
    const bin = statSync(traceFile).size;
    expect(statSync(compact).size).toBeLessThanOrEqual(4 * bin);
    expect(statSync(full).size).toBeGreaterThan(2 * statSync(compact).size);
    expect((await run('trace', 'export', traceFile, '--format', 'csv', '-o', '-', '--stages')).status).toBe(2);
  });
});

describe('refusals with a reason, errors with advice', () => {
  it('client.pio on the PCI configuration ports is refused', () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient();
    for (const [base, len] of [[0xcf8, 8], [0xcf8, 1], [0xcfc, 4], [0xcf0, 9], [0xcff, 1], [0xcfb, 2]] as const) {
      expect(() => client.pio(base, len, { read: () => 0, write: () => {} }), `${base}+${len}`).toThrow(/0xcf8, 0xcfc\.\.0xcff.*client\.pci/);
    }
    // Next to them is fine, and 0xCF9 (reset control) is the device model's.
    client.pio(0xcf0, 8, { read: () => 0, write: () => {} });
    client.pio(0xcf9, 3, { read: () => 0, write: () => {} });
    client.pio(0xd00, 4, { read: () => 0, write: () => {} });
  });

  it('setIrqline with an unknown op, a BAR size as a number', () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    vm.setIrqline(4, 1);
    expect(() => vm.setIrqline(4, 99)).toThrow(RangeError);
    expect(() => new PciFunction({ vendorId: 0x8086, deviceId: 1, bars: [{ index: 0, kind: 'mem32', size: 4096 as unknown as bigint }] })).toThrow(
      /bars\[0\]\.size must be a bigint.*4096n/,
    );
  });

  it('DESTROY_VM EPERM, guest run EPERM/EINVAL, a second createVm: the errno kept, the advice added', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const caught = async (f: () => unknown) => {
      try {
        await f();
      } catch (err) {
        return err as AcrnHsmError;
      }
      throw new Error('expected an error');
    };
    let e = await caught(() => hsm.guest(vm).run({ vcpus: [[{ pio: 0x70, size: 1, read: true }]] }));
    expect(e).toMatchObject({ code: 'EPERM', errno: 1 });
    expect(e.message).toMatch(/vm\.start\(\)/);
    e = await caught(() => hsm.createVm({ vcpuNum: 1 }));
    expect(e).toMatchObject({ code: 'ERR_VM_EXISTS' });
    expect(e.message).toMatch(/one VM.*per open file.*reopen/);
    vm.start();
    e = await caught(() => hsm.guest(vm).run({ vcpus: [[], []] }));
    expect(e).toMatchObject({ code: 'EINVAL', errno: 22 });
    expect(e.message).toMatch(/2 vCPU lists but the VM 1 vCPU/);
    e = await caught(() => vm.destroy());
    expect(e).toMatchObject({ code: 'EPERM', errno: 1 });
    expect(e.message).toMatch(/vm\.pause\(\) first/);
    vm.pause();
    vm.destroy();
  });

  it('a second loop on a client, a loop or fromShared after destroy', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const token = vm.share();
    const client = vm.createIoreqClient();
    const serving = client.run();
    expect(() => client.runSync()).toThrow(/already serving.*client\.stop\(\)/);
    await expect(client.run()).rejects.toMatchObject({ code: 'ERR_CLIENT_RUNNING' });
    client.stop();
    await serving;
    expect(Vm.fromShared(token).vmid).toBe(vm.vmid);
    vm.pause();
    vm.destroy();
    await expect(client.run()).rejects.toMatchObject({ code: 'ERR_VM_DESTROYED' });
    expect(() => client.runSync()).toThrow(/destroyed/);
    expect(() => Vm.fromShared(token)).toThrow(/destroyed/);
  });

  it('runSync() keeps the client busy for its whole loop: record() from a handler is ERR_CLIENT_RUNNING', async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const src = `
      const { parentPort, workerData } = require('node:worker_threads');
      (async () => {
        const { Vm } = await import(workerData.dist);
        const client = Vm.fromShared(workerData.token).createIoreqClient();
        let code = 'none';
        client.pio(0x510, 4, {
          read() {
            try { client.record(workerData.trace); } catch (err) { code = err.code; }
            return 0x1234;
          },
          write() {},
        });
        parentPort.postMessage({ stopToken: client.stopToken });
        client.runSync();
        parentPort.postMessage({ code });
      })();`;
    const worker = new Worker(src, {
      eval: true,
      workerData: { dist: join(root, 'dist', 'index.js'), token: vm.share(), trace: join(tmpdir(), `acrn-hsm-busy-${process.pid}.trace`) },
    });
    try {
      const messages: Record<string, unknown>[] = [];
      const next = () =>
        new Promise<Record<string, unknown>>((resolve, reject) => {
          worker.once('message', resolve);
          worker.once('error', reject);
        });
      const ready = await next();
      vm.start();
      const r = await hsm.guest(vm).run({ vcpus: [[{ pio: 0x510, size: 4, read: true, expect: 0x1234 }]] });
      expect(r.completed).toBe(1);
      expect(r.mismatches).toHaveLength(0);
      const done = next();
      stopClient(ready.stopToken as number);
      messages.push(await done);
      expect(messages[0]).toEqual({ code: 'ERR_CLIENT_RUNNING' });
    } finally {
      await worker.terminate();
      vm.pause();
      vm.destroy();
    }
  });

  it('a workload names PCI fields as decoded slots do (device/function/register); the short names still parse', async () => {
    for (const pci of [{ bus: 0, device: 5, function: 0, register: 0 }, { bus: 0, dev: 5, func: 0, reg: 0 }]) {
      const hsm = Hsm.emulated();
      const vm = hsm.createVm({ vcpuNum: 1 });
      const client = vm.createIoreqClient();
      client.pci(0, 5, 0, new PciFunction({ vendorId: 0x8086, deviceId: 0x1234 }));
      const serving = client.run();
      vm.start();
      const r = await hsm.guest(vm).run({ vcpus: [[{ pci, size: 4, read: true, expect: 0x1234_8086 }]] });
      expect(r.mismatches, JSON.stringify(pci)).toEqual([]);
      expect(r.completed).toBe(2);
      client.stop();
      await serving;
    }
  });

  it("a PCI handler's error carries the address packed as traces pack it, and its fields", async () => {
    const hsm = Hsm.emulated();
    const vm = hsm.createVm({ vcpuNum: 1 });
    const client = vm.createIoreqClient();
    const errors: ServedRequest[] = [];
    client.on('error', (err: Error & { request: ServedRequest }) => errors.push(err.request));
    client.pci(0, 7, 2, {
      read: () => {
        throw new Error('boom');
      },
      write: () => {},
    });
    const serving = client.run();
    vm.start();
    await hsm.guest(vm).run({ vcpus: [[{ pci: { bus: 0, device: 7, function: 2, register: 0x44 }, size: 4, read: true }]] });
    client.stop();
    await serving;
    expect(errors).toHaveLength(1);
    expect(errors[0]?.address).toBe(pciAddress(0, 7, 2, 0x44));
    expect(errors[0]?.pci).toEqual({ bus: 0, device: 7, function: 2, register: 0x44 });
    expect(pciFields(errors[0]!.address)).toEqual(errors[0]?.pci);
  });
});
