//! virtio-blk (virtio 1.x §5.2) backed by a file, with positional I/O (`pread`/`pwrite`).
//!
//! A request is a device-readable header `{ type: le32, reserved: le32, sector: le64 }`, data
//! buffers, and a final device-writable status byte. Served: `IN` (0), `OUT` (1), `FLUSH` (4,
//! `fdatasync`: a write followed by a flush is durable), `GET_ID` (8, 20 bytes),
//! `DISCARD` (11, a hole punched where the file system can) and `WRITE_ZEROES` (13). Data
//! outside the disk, a length that is not a multiple of 512, a write to a read-only disk: status
//! `IOERR`; another type: `UNSUPP`. A chain too short for a header and a status byte is a
//! protocol error (DEVICE_NEEDS_RESET).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::device::{TYPE_BLOCK, VirtioDevice};
use super::queue::{DescChain, QueueError};
use crate::guest_memory::GuestMemory;

/// `VIRTIO_BLK_F_SEG_MAX`.
pub const F_SEG_MAX: u64 = 1 << 2;
/// `VIRTIO_BLK_F_RO`.
pub const F_RO: u64 = 1 << 5;
/// `VIRTIO_BLK_F_BLK_SIZE`.
pub const F_BLK_SIZE: u64 = 1 << 6;
/// `VIRTIO_BLK_F_FLUSH`.
pub const F_FLUSH: u64 = 1 << 9;
/// `VIRTIO_BLK_F_DISCARD`.
pub const F_DISCARD: u64 = 1 << 13;
/// `VIRTIO_BLK_F_WRITE_ZEROES`.
pub const F_WRITE_ZEROES: u64 = 1 << 14;

/// `VIRTIO_BLK_T_IN`.
pub const T_IN: u32 = 0;
/// `VIRTIO_BLK_T_OUT`.
pub const T_OUT: u32 = 1;
/// `VIRTIO_BLK_T_FLUSH`.
pub const T_FLUSH: u32 = 4;
/// `VIRTIO_BLK_T_GET_ID`.
pub const T_GET_ID: u32 = 8;
/// `VIRTIO_BLK_T_DISCARD`.
pub const T_DISCARD: u32 = 11;
/// `VIRTIO_BLK_T_WRITE_ZEROES`.
pub const T_WRITE_ZEROES: u32 = 13;

/// `VIRTIO_BLK_S_OK`.
pub const S_OK: u8 = 0;
/// `VIRTIO_BLK_S_IOERR`.
pub const S_IOERR: u8 = 1;
/// `VIRTIO_BLK_S_UNSUPP`.
pub const S_UNSUPP: u8 = 2;

/// The sector size of the protocol.
pub const SECTOR: u64 = 512;
const QUEUE_SIZE: u16 = 256;
const CHUNK: usize = 64 * 1024;
/// Discard / write-zeroes: at most this many sectors, one segment, per request.
const MAX_RANGE_SECTORS: u32 = 1 << 21;

/// Counters of a [`VirtioBlk`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlkStats {
    /// Requests served (any status).
    pub requests: u64,
    /// Bytes read from the file.
    pub read_bytes: u64,
    /// Bytes written to the file.
    pub written_bytes: u64,
    /// Flushes.
    pub flushes: u64,
    /// Requests answered IOERR.
    pub errors: u64,
}

/// A byte count as a used element's `len` (a chain may describe more than 4 GiB).
fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A virtio-blk device over a file.
#[derive(Debug)]
pub struct VirtioBlk {
    file: File,
    sectors: u64,
    read_only: bool,
    id: [u8; 20],
    stats: BlkStats,
}

impl VirtioBlk {
    /// Opens `path` (read-write unless `read_only`); the capacity is its size in whole
    /// 512-byte sectors.
    pub fn open(path: &Path, read_only: bool) -> std::io::Result<VirtioBlk> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)?;
        let mut id = [0u8; 20];
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = name.len().min(20);
        id[..n].copy_from_slice(&name.as_bytes()[..n]);
        VirtioBlk::from_file(file, read_only).map(|b| b.with_id(id))
    }

    /// A device over an open `file`.
    pub fn from_file(file: File, read_only: bool) -> std::io::Result<VirtioBlk> {
        let len = file.metadata()?.len();
        Ok(VirtioBlk {
            file,
            sectors: len / SECTOR,
            read_only,
            id: *b"acrn-hsm-virtio-blk\0",
            stats: BlkStats::default(),
        })
    }

    /// The serial number GET_ID answers (20 bytes, NUL-padded).
    pub fn with_id(mut self, id: [u8; 20]) -> VirtioBlk {
        self.id = id;
        self
    }

    /// The capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// The counters.
    pub fn stats(&self) -> BlkStats {
        self.stats
    }

    fn config(&self) -> [u8; 0x3c] {
        let mut c = [0u8; 0x3c];
        c[0..8].copy_from_slice(&self.sectors.to_le_bytes());
        // seg_max: the queue size minus header and status.
        c[0x0c..0x10].copy_from_slice(&(u32::from(QUEUE_SIZE) - 2).to_le_bytes());
        c[0x14..0x18].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        for at in [0x24, 0x30] {
            c[at..at + 4].copy_from_slice(&MAX_RANGE_SECTORS.to_le_bytes());
            c[at + 4..at + 8].copy_from_slice(&1u32.to_le_bytes());
        }
        // discard_sector_alignment: 1 sector.
        c[0x2c..0x30].copy_from_slice(&1u32.to_le_bytes());
        c
    }

    /// The byte range of `sectors` from `sector`, if inside the disk.
    fn range(&self, sector: u64, bytes: u64) -> Option<u64> {
        let end = sector.checked_mul(SECTOR)?.checked_add(bytes)?;
        (end <= self.sectors * SECTOR).then_some(sector * SECTOR)
    }

    fn read_in(
        &mut self,
        chain: &DescChain,
        mem: &GuestMemory,
        sector: u64,
        data_len: u64,
    ) -> Result<(u8, u32), QueueError> {
        if data_len % SECTOR != 0 {
            return Ok((S_IOERR, 0));
        }
        let Some(mut pos) = self.range(sector, data_len) else {
            return Ok((S_IOERR, 0));
        };
        let mut buf = vec![0u8; CHUNK.min(data_len as usize)];
        let mut done = 0u64;
        while done < data_len {
            let n = ((data_len - done) as usize).min(CHUNK);
            if self.file.read_exact_at(&mut buf[..n], pos).is_err() {
                return Ok((S_IOERR, clamp(done)));
            }
            chain.write_at(mem, done, &buf[..n])?;
            done += n as u64;
            pos += n as u64;
        }
        self.stats.read_bytes += data_len;
        Ok((S_OK, clamp(data_len)))
    }

    fn write_out(
        &mut self,
        chain: &DescChain,
        mem: &GuestMemory,
        sector: u64,
    ) -> Result<u8, QueueError> {
        let data_len = chain.readable_len() - 16;
        if self.read_only || data_len % SECTOR != 0 {
            return Ok(S_IOERR);
        }
        let Some(mut pos) = self.range(sector, data_len) else {
            return Ok(S_IOERR);
        };
        let mut buf = vec![0u8; CHUNK.min(data_len as usize)];
        let mut done = 0u64;
        while done < data_len {
            let n = ((data_len - done) as usize).min(CHUNK);
            chain.read_at(mem, 16 + done, &mut buf[..n])?;
            if self.file.write_all_at(&buf[..n], pos).is_err() {
                return Ok(S_IOERR);
            }
            done += n as u64;
            pos += n as u64;
        }
        self.stats.written_bytes += data_len;
        Ok(S_OK)
    }

    /// DISCARD and WRITE_ZEROES: one segment `{ sector: le64, num_sectors: le32, flags: le32 }`.
    fn ranges(&mut self, chain: &DescChain, mem: &GuestMemory, ty: u32) -> Result<u8, QueueError> {
        let mut seg = [0u8; 16];
        // One segment (max_discard_seg = max_write_zeroes_seg = 1).
        if self.read_only || chain.readable_len() != 32 || chain.read_at(mem, 16, &mut seg)? != 16 {
            return Ok(S_IOERR);
        }
        let sector = u64::from_le_bytes([
            seg[0], seg[1], seg[2], seg[3], seg[4], seg[5], seg[6], seg[7],
        ]);
        let num = u32::from_le_bytes([seg[8], seg[9], seg[10], seg[11]]);
        let flags = u32::from_le_bytes([seg[12], seg[13], seg[14], seg[15]]);
        // Unknown flags, or the unmap flag on a discard: UNSUPP (§5.2.6.2).
        if flags & !1 != 0 || (ty == T_DISCARD && flags != 0) {
            return Ok(S_UNSUPP);
        }
        if num > MAX_RANGE_SECTORS {
            return Ok(S_IOERR);
        }
        let bytes = u64::from(num) * SECTOR;
        let Some(pos) = self.range(sector, bytes) else {
            return Ok(S_IOERR);
        };
        if ty == T_DISCARD {
            // Advisory: a file system without hole punching keeps the data.
            // SAFETY: fallocate on our own open descriptor; no memory is passed.
            let _ = unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    pos as libc::off_t,
                    bytes as libc::off_t,
                )
            };
            return Ok(S_OK);
        }
        let zeros = vec![0u8; CHUNK.min(bytes as usize)];
        let mut done = 0u64;
        while done < bytes {
            let n = ((bytes - done) as usize).min(CHUNK);
            if self.file.write_all_at(&zeros[..n], pos + done).is_err() {
                return Ok(S_IOERR);
            }
            done += n as u64;
        }
        self.stats.written_bytes += bytes;
        Ok(S_OK)
    }
}

impl VirtioDevice for VirtioBlk {
    fn name(&self) -> &str {
        "blk"
    }
    fn device_type(&self) -> u16 {
        TYPE_BLOCK
    }
    fn pci_class(&self) -> (u8, u8, u8) {
        // Mass storage, SCSI (what virtio-blk functions report).
        (0x01, 0x00, 0x00)
    }
    fn features(&self) -> u64 {
        let mut f = F_SEG_MAX | F_BLK_SIZE | F_FLUSH | F_DISCARD | F_WRITE_ZEROES;
        if self.read_only {
            f |= F_RO;
        }
        f
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let c = self.config();
        for (k, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| c.get(o + k))
                .copied()
                .unwrap_or(0);
        }
    }
    fn process(
        &mut self,
        _queue: u16,
        chain: &DescChain,
        mem: &GuestMemory,
    ) -> Result<u32, QueueError> {
        let mut hdr = [0u8; 16];
        let writable = chain.writable_len();
        if chain.read_at(mem, 0, &mut hdr)? != 16 {
            return Err(QueueError::BadRequest(
                "virtio-blk header shorter than 16 bytes",
            ));
        }
        if writable == 0 {
            return Err(QueueError::BadRequest(
                "virtio-blk request without a status byte",
            ));
        }
        let ty = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let sector = u64::from_le_bytes([
            hdr[8], hdr[9], hdr[10], hdr[11], hdr[12], hdr[13], hdr[14], hdr[15],
        ]);
        // The status byte is the last writable byte; data before it.
        let data_in = writable - 1;
        self.stats.requests += 1;
        let (status, written) = match ty {
            T_IN => self.read_in(chain, mem, sector, data_in)?,
            T_OUT => (self.write_out(chain, mem, sector)?, 0),
            T_FLUSH => {
                self.stats.flushes += 1;
                let s = if self.read_only || self.file.sync_data().is_ok() {
                    S_OK
                } else {
                    S_IOERR
                };
                (s, 0)
            }
            T_GET_ID => {
                let n = data_in.min(20) as usize;
                let w = chain.write_at(mem, 0, &self.id[..n])?;
                (S_OK, w as u32)
            }
            T_DISCARD | T_WRITE_ZEROES => (self.ranges(chain, mem, ty)?, 0),
            _ => (S_UNSUPP, 0),
        };
        if status == S_IOERR {
            self.stats.errors += 1;
        }
        chain.write_at(mem, data_in, &[status])?;
        // The status byte follows the data.
        Ok(written.saturating_add(1))
    }
}
