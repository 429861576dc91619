import { closeSync, fdatasync, fdatasyncSync, fstatSync, openSync, read, readSync, write, writeSync } from 'node:fs';
import { basename } from 'node:path';
import type { VirtioChain, VirtioDevice } from './types.js';
import { gather, totalLength } from './types.js';

/** `VIRTIO_BLK_F_RO`. */
const F_RO = 1n << 5n;
/** `VIRTIO_BLK_F_BLK_SIZE`. */
const F_BLK_SIZE = 1n << 6n;
/** `VIRTIO_BLK_F_FLUSH`. */
const F_FLUSH = 1n << 9n;
const T_IN = 0;
const T_OUT = 1;
const T_FLUSH = 4;
const T_GET_ID = 8;
const S_OK = 0;
const S_IOERR = 1;
const S_UNSUPP = 2;
const SECTOR = 512;

type Io = { write: boolean; buf: Buffer; pos: number };
type Plan = { status: number; io: Io[]; flush: boolean; written: number };

const readAsync = (fd: number, b: Buffer, off: number, len: number, pos: number) =>
  new Promise<number>((ok, ko) => read(fd, b, off, len, pos, (e, n) => (e ? ko(e) : ok(n))));
const writeAsync = (fd: number, b: Buffer, off: number, len: number, pos: number) =>
  new Promise<number>((ok, ko) => write(fd, b, off, len, pos, (e, n) => (e ? ko(e) : ok(n))));
const fdatasyncAsync = (fd: number) => new Promise<void>((ok, ko) => fdatasync(fd, (e) => (e ? ko(e) : ok())));

/** Counters of a {@link TsVirtioBlk}. */
export interface TsBlkStats {
  requests: number;
  readBytes: number;
  writtenBytes: number;
  flushes: number;
  errors: number;
}

/**
 * virtio-blk (device ID 2) in TypeScript over a file: positional reads and writes straight
 * between the file and the guest's buffers (no copy), FLUSH is `fdatasync` (a write followed by
 * a flush is durable), GET_ID answers 20 bytes (the file's name by default). Data outside the
 * disk, a length not a multiple of 512, a write to a read-only disk: status IOERR; another
 * request type: UNSUPP. A chain too short for a header and a status byte completes with 0
 * bytes and no status.
 *
 * `{ async: true }`: the I/O runs on the libuv pool (`fs.read`/`fs.write`/`fs.fdatasync`
 * straight into the views) and `request` returns a promise: requests complete as their I/O
 * does, out of order (use `client.run()`).
 */
export class TsVirtioBlk implements VirtioDevice {
  readonly name = 'ts-blk';
  readonly deviceId = 2;
  readonly features: bigint;
  readonly config: Uint8Array;
  readonly queues = [256];
  readonly sectors: bigint;
  readonly stats: TsBlkStats = { requests: 0, readBytes: 0, writtenBytes: 0, flushes: 0, errors: 0 };
  private fd: number;
  private readonly readOnly: boolean;
  private readonly id: Buffer;
  private readonly async: boolean;

  constructor(
    readonly path: string,
    options: { readOnly?: boolean; id?: string; async?: boolean } = {},
  ) {
    if (typeof path !== 'string' || path === '') throw new TypeError('path must be a file name');
    this.readOnly = options.readOnly === true;
    this.async = options.async === true;
    this.fd = openSync(path, this.readOnly ? 'r' : 'r+');
    this.sectors = BigInt(Math.floor(fstatSync(this.fd).size / SECTOR));
    this.features = F_BLK_SIZE | F_FLUSH | (this.readOnly ? F_RO : 0n);
    const cfg = Buffer.alloc(0x18);
    cfg.writeBigUInt64LE(this.sectors, 0);
    cfg.writeUInt32LE(SECTOR, 0x14);
    this.config = cfg;
    this.id = Buffer.alloc(20);
    this.id.write((options.id ?? basename(path)).slice(0, 20));
  }

  /** Closes the file. */
  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  request(_queue: number, chain: VirtioChain): number | Promise<number> {
    const w = chain.writable;
    if (totalLength(chain.readable) < 16 || totalLength(w) < 1) return 0;
    const hdr = Buffer.alloc(16);
    gather(chain.readable, 0, hdr);
    const type = hdr.readUInt32LE(0);
    const sector = hdr.readBigUInt64LE(8);
    // The status byte is the last writable byte; the data-in buffers come before it.
    const last = w[w.length - 1]!;
    const status = last.subarray(last.length - 1);
    const dataIn = [...w.slice(0, -1), last.subarray(0, last.length - 1)].filter((b) => b.length > 0);
    this.stats.requests++;
    const plan = this.plan(type, sector, dataIn, chain.readable);
    const finish = (st: number) => {
      if (st === S_IOERR) this.stats.errors++;
      status[0] = st;
      return (st === S_OK ? plan.written : 0) + 1;
    };
    if (plan.status !== S_OK) return finish(plan.status);
    if (this.async) return this.runAsync(plan).then(finish);
    return finish(this.runSync(plan));
  }

  /** What a request does: positional reads/writes between the file and the guest's views, a flush. */
  private plan(type: number, sector: bigint, dataIn: Buffer[], readable: Buffer[]): Plan {
    const io: Io[] = [];
    const fail = (status: number): Plan => ({ status, io, flush: false, written: 0 });
    switch (type) {
      case T_IN: {
        const len = totalLength(dataIn);
        let at = this.range(sector, len);
        if (at === undefined) return fail(S_IOERR);
        for (const b of dataIn) {
          io.push({ write: false, buf: b, pos: at });
          at += b.length;
        }
        this.stats.readBytes += len;
        return { status: S_OK, io, flush: false, written: len };
      }
      case T_OUT: {
        const data = this.readableAfterHeader(readable);
        const len = totalLength(data);
        let at = this.readOnly ? undefined : this.range(sector, len);
        if (at === undefined) return fail(S_IOERR);
        for (const b of data) {
          io.push({ write: true, buf: b, pos: at });
          at += b.length;
        }
        this.stats.writtenBytes += len;
        return { status: S_OK, io, flush: false, written: 0 };
      }
      case T_FLUSH:
        this.stats.flushes++;
        return { status: S_OK, io, flush: !this.readOnly, written: 0 };
      case T_GET_ID: {
        let done = 0;
        for (const b of dataIn) {
          if (done === this.id.length) break;
          done += this.id.copy(b, 0, done);
        }
        return { status: S_OK, io, flush: false, written: done };
      }
      default:
        return fail(S_UNSUPP);
    }
  }

  private runSync(plan: Plan): number {
    try {
      for (const { write, buf, pos } of plan.io) {
        let done = 0;
        while (done < buf.length) {
          const n = write ? writeSync(this.fd, buf, done, buf.length - done, pos + done) : readSync(this.fd, buf, done, buf.length - done, pos + done);
          if (n === 0) return S_IOERR;
          done += n;
        }
      }
      if (plan.flush) fdatasyncSync(this.fd);
      return S_OK;
    } catch {
      return S_IOERR;
    }
  }

  private async runAsync(plan: Plan): Promise<number> {
    try {
      await Promise.all(
        plan.io.map(async ({ write: out, buf, pos }) => {
          let done = 0;
          while (done < buf.length) {
            const n = out ? await writeAsync(this.fd, buf, done, buf.length - done, pos + done) : await readAsync(this.fd, buf, done, buf.length - done, pos + done);
            if (n === 0) throw new Error('short read');
            done += n;
          }
        }),
      );
      if (plan.flush) await fdatasyncAsync(this.fd);
      return S_OK;
    } catch {
      return S_IOERR;
    }
  }

  /** The byte position of `len` bytes from `sector`, if a whole number of sectors inside the disk. */
  private range(sector: bigint, len: number): number | undefined {
    if (len % SECTOR !== 0) return undefined;
    const end = sector * BigInt(SECTOR) + BigInt(len);
    if (end > this.sectors * BigInt(SECTOR)) return undefined;
    return Number(sector * BigInt(SECTOR));
  }

  private readableAfterHeader(bufs: readonly Buffer[]): Buffer[] {
    const out: Buffer[] = [];
    let skip = 16;
    for (const b of bufs) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      out.push(b.subarray(skip));
      skip = 0;
    }
    return out;
  }
}
