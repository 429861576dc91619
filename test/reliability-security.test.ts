// Security at the TypeScript boundary: the device opened close-on-exec, permission errors that say
// who may open /dev/acrn_hsm, and the viewer's server on 127.0.0.1 only (tested with its
// path-traversal cases in viewer-server.test.ts; referenced here).
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AcrnHsmError, Hsm } from '../dist/index.js';

const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'acrn-sec-'));
const O_CLOEXEC = 0o2000000;

/** The fds of this process open on `path`, with their open flags (from /proc/self/fdinfo). */
function fdsOn(path: string): { fd: string; flags: number }[] {
  const out: { fd: string; flags: number }[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== path) continue;
    const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    out.push({ fd, flags: parseInt(/flags:\s+([0-7]+)/.exec(info)?.[1] ?? '0', 8) });
  }
  return out;
}

describe('reliability: security', () => {
  it('Hsm.open opens the device read-write and close-on-exec; a child process does not inherit it', () => {
    const path = join(dir, 'fake-hsm');
    writeFileSync(path, 'x');
    expect(fdsOn(path)).toEqual([]);
    const hsm = Hsm.open(path);
    const fds = fdsOn(path);
    expect(fds.length).toBe(1);
    expect(fds[0]!.flags & O_CLOEXEC).toBe(O_CLOEXEC);
    expect(fds[0]!.flags & 3).toBe(2); // O_RDWR
    const child = spawnSync('ls', ['-l', '/proc/self/fd/'], { encoding: 'utf8' });
    expect(child.status).toBe(0);
    expect(child.stdout).not.toContain(path);
    expect(hsm.emulated).toBe(false);
  });

  it('EACCES names the path, its owner and mode, the uid, and who may open /dev/acrn_hsm', (ctx) => {
    const asRoot = process.getuid?.() === 0;
    // As root the file opens anyway (CAP_DAC_OVERRIDE): the check runs as an unprivileged user,
    // who must be able to read this checkout's dist/ (not so in a private home directory).
    if (asRoot) {
      const probe = spawnSync(process.execPath, ['-e', `require('node:fs').accessSync(${JSON.stringify(join(root, 'dist/index.js'))})`], { uid: 65534, gid: 65534 });
      if (probe.status !== 0) {
        console.warn(`skipped: uid 65534 cannot read ${root}/dist, so the EACCES check cannot run as an unprivileged user here`);
        ctx.skip();
      }
    }
    const path = join(dir, 'root-only');
    writeFileSync(path, 'x');
    chmodSync(path, 0o600);
    chmodSync(dir, 0o755);
    const script = join(dir, 'open.mjs');
    writeFileSync(
      script,
      `const { Hsm } = await import(${JSON.stringify(join(root, 'dist/index.js'))});
       try { Hsm.open(process.argv[2]); console.log(JSON.stringify({ opened: true })); }
       catch (e) { console.log(JSON.stringify({ code: e.code, errno: e.errno, name: e.name, message: e.message })); }`,
    );
    const r = spawnSync(process.execPath, [script, path], { encoding: 'utf8', ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
    expect(r.status, r.stderr).toBe(0);
    const e = JSON.parse(r.stdout) as { code: string; errno: number; name: string; message: string };
    expect(e.code).toBe('EACCES');
    expect(e.errno).toBe(13);
    expect(e.name).toBe('AcrnHsmError');
    expect(e.message).toContain(path);
    expect(e.message).toMatch(/owned by uid \d+, gid \d+, mode 0600/);
    expect(e.message).toMatch(/runs as uid \d+/);
    expect(e.message).toMatch(/root/);
    expect(e.message).toMatch(/udev rule/);
    expect(e.message.split('\n').length).toBe(1);
  });

  it('ENOENT says where /dev/acrn_hsm comes from and what to use instead', () => {
    let err: unknown;
    try {
      Hsm.open(join(dir, 'missing'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AcrnHsmError);
    expect((err as AcrnHsmError).code).toBe('ENOENT');
    expect((err as AcrnHsmError).message).toMatch(/ACRN HSM driver.*Hsm\.emulated\(\)/);
  });
});
