import { closeSync, fdatasyncSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
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

  constructor(
    readonly path: string,
    options: { readOnly?: boolean; id?: string } = {},
  ) {
    if (typeof path !== 'string' || path === '') throw new TypeError('path must be a file name');
    this.readOnly = options.readOnly === true;
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

  request(_queue: number, chain: VirtioChain): number {
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
    let st = S_OK;
    let written = 0;
    try {
      switch (type) {
        case T_IN: {
          const len = totalLength(dataIn);
          const pos = this.range(sector, len);
          if (pos === undefined) {
            st = S_IOERR;
            break;
          }
          let at = pos;
          for (const b of dataIn) {
            let done = 0;
            while (done < b.length) {
              const n = readSync(this.fd, b, done, b.length - done, at + done);
              if (n === 0) throw new Error('short read');
              done += n;
            }
            at += b.length;
            written += b.length;
          }
          this.stats.readBytes += len;
          break;
        }
        case T_OUT: {
          const data = this.readableAfterHeader(chain.readable);
          const len = totalLength(data);
          const pos = this.readOnly ? undefined : this.range(sector, len);
          if (pos === undefined) {
            st = S_IOERR;
            break;
          }
          let at = pos;
          for (const b of data) {
            let done = 0;
            while (done < b.length) done += writeSync(this.fd, b, done, b.length - done, at + done);
            at += b.length;
          }
          this.stats.writtenBytes += len;
          break;
        }
        case T_FLUSH:
          if (!this.readOnly) fdatasyncSync(this.fd);
          this.stats.flushes++;
          break;
        case T_GET_ID: {
          let done = 0;
          for (const b of dataIn) {
            if (done === this.id.length) break;
            done += this.id.copy(b, 0, done);
          }
          written = done;
          break;
        }
        default:
          st = S_UNSUPP;
      }
    } catch {
      st = S_IOERR;
    }
    if (st === S_IOERR) this.stats.errors++;
    status[0] = st;
    return written + 1;
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
