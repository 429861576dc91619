//! The guest-side virtio-blk benchmark (`acrn-hsm bench --virtio`): SeaBIOS (Debian's
//! `bios.bin`, unchanged) boots a disk image whose boot sector ([`boot_sector`]) reads the same
//! disk through int 13h AH=42h, so through SeaBIOS's virtio-blk driver (modern virtio-pci) and
//! the device under test, and times every read with `rdtsc`:
//!
//! 1. `warmup` reads of `big_sectors` sectors (not counted);
//! 2. `big_reads` reads of `big_sectors` sectors (64: 32 KiB) → throughput;
//! 3. `small_reads` reads of `small_sectors` sectors (8: 4 KiB) → per-read latency.
//!
//! Each phase reads sequentially from LBA `lba0`, wrapping before `lba_end`. The TSC delta of
//! every read (u32) is kept at 2000:0000 and, at the end, written to the debugcon port 0x402
//! after the 8-byte marker [`MAGIC`] (SeaBIOS writes its own log to that port first); then
//! 0x10 goes to `isa-debug-exit` at 0xf4 (a failed read: 0x11).
//!
//! The same image file is used by every variant: [`run_native`] (the KVM engine with the
//! native virtio-blk of [`crate::run`]) and QEMU/KVM with its own `virtio-blk-pci`
//! (`disable-legacy=on`, so SeaBIOS takes the same modern path) from [`qemu_args`]. Both sides
//! go through the same firmware driver, so the comparison is the device model plus its exit
//! path. Source of the boot sector: `src/data/virtio_blk_bench.s` (GNU as), listing below.

use std::path::Path;
use std::time::Duration;

use crate::run::{Console, Payload, RunConfig, RunEnd, SEABIOS_PATH, run_guest};

/// The marker before the TSC deltas in the debugcon output.
pub const MAGIC: &[u8; 8] = b"VBLKDUMP";
/// Where the parameters sit in the boot sector.
pub const PARAMS_AT: usize = 0x1e0;
/// The value the guest writes to `isa-debug-exit` when it is done (QEMU exits with 33).
pub const EXIT_VALUE: u32 = 0x10;
/// At most this many timed reads in all (the deltas fill one 64 KiB segment).
pub const MAX_READS: usize = 16384;
/// Sector size.
pub const SECTOR: u64 = 512;

/// The boot sector's code (then [`MAGIC`] at 0x0f1), loaded at 0000:7C00.
#[rustfmt::skip]
const CODE: &[u8] = &[
    0xfa,                                       // 000 cli
    0x31, 0xc0,                                 // 001 xor %ax,%ax
    0x8e, 0xd8,                                 // 003 mov %ax,%ds
    0x8e, 0xc0,                                 // 005 mov %ax,%es
    0x8e, 0xd0,                                 // 007 mov %ax,%ss
    0xbc, 0x00, 0x7c,                           // 009 mov $0x7c00,%sp
    0xfb,                                       // 00c sti
    0xfc,                                       // 00d cld
    0x88, 0x16, 0x10, 0x05,                     // 00e mov %dl,0x510
    0xc7, 0x06, 0x1a, 0x05, 0x00, 0x00,         // 012 movw $0x0,0x51a
    0xc7, 0x06, 0x00, 0x05, 0x10, 0x00,         // 018 movw $0x10,0x500
    0xc7, 0x06, 0x04, 0x05, 0x00, 0x00,         // 01e movw $0x0,0x504
    0xc7, 0x06, 0x06, 0x05, 0x00, 0x10,         // 024 movw $0x1000,0x506
    0x66, 0xc7, 0x06, 0x0c, 0x05, 0x00, 0x00, 0x00, 0x00,// 02a movl $0x0,0x50c
    0x8b, 0x0e, 0xe0, 0x7d,                     // 033 mov 0x7de0,%cx
    0x8b, 0x1e, 0xe4, 0x7d,                     // 037 mov 0x7de4,%bx
    0xe8, 0x42, 0x00,                           // 03b call 0x7c80
    0x8b, 0x0e, 0xe2, 0x7d,                     // 03e mov 0x7de2,%cx
    0x8b, 0x1e, 0xe4, 0x7d,                     // 042 mov 0x7de4,%bx
    0xe8, 0x37, 0x00,                           // 046 call 0x7c80
    0x8b, 0x0e, 0xe6, 0x7d,                     // 049 mov 0x7de6,%cx
    0x8b, 0x1e, 0xe8, 0x7d,                     // 04d mov 0x7de8,%bx
    0xe8, 0x2c, 0x00,                           // 051 call 0x7c80
    0xba, 0x02, 0x04,                           // 054 mov $0x402,%dx
    0xbe, 0xf1, 0x7c,                           // 057 mov $0x7cf1,%si
    0xb9, 0x08, 0x00,                           // 05a mov $0x8,%cx
    0xac,                                       // 05d lods %ds:(%si),%al
    0xee,                                       // 05e out %al,(%dx)
    0xe2, 0xfc,                                 // 05f loop 0x7c5d
    0xb8, 0x00, 0x20,                           // 061 mov $0x2000,%ax
    0x8e, 0xc0,                                 // 064 mov %ax,%es
    0x8b, 0x0e, 0x1a, 0x05,                     // 066 mov 0x51a,%cx
    0x31, 0xf6,                                 // 06a xor %si,%si
    0xe3, 0x05,                                 // 06c jcxz 0x7c73
    0x26, 0xac,                                 // 06e lods %es:(%si),%al
    0xee,                                       // 070 out %al,(%dx)
    0xe2, 0xfb,                                 // 071 loop 0x7c6e
    0xb0, 0x10,                                 // 073 mov $0x10,%al
    0xe6, 0xf4,                                 // 075 out %al,$0xf4
    0xf4,                                       // 077 hlt
    0xeb, 0xfd,                                 // 078 jmp 0x7c77
    0xb0, 0x11,                                 // 07a mov $0x11,%al
    0xe6, 0xf4,                                 // 07c out %al,$0xf4
    0xeb, 0xf7,                                 // 07e jmp 0x7c77
    0xe3, 0x6e,                                 // 080 jcxz 0x7cf0
    0x89, 0x0e, 0x18, 0x05,                     // 082 mov %cx,0x518
    0x89, 0x1e, 0x1c, 0x05,                     // 086 mov %bx,0x51c
    0x66, 0xa1, 0xec, 0x7d,                     // 08a mov 0x7dec,%eax
    0x66, 0xa3, 0x08, 0x05,                     // 08e mov %eax,0x508
    0x8b, 0x1e, 0x1c, 0x05,                     // 092 mov 0x51c,%bx
    0x89, 0x1e, 0x02, 0x05,                     // 096 mov %bx,0x502
    0x0f, 0x31,                                 // 09a rdtsc
    0x66, 0xa3, 0x14, 0x05,                     // 09c mov %eax,0x514
    0xb4, 0x42,                                 // 0a0 mov $0x42,%ah
    0x8a, 0x16, 0x10, 0x05,                     // 0a2 mov 0x510,%dl
    0xbe, 0x00, 0x05,                           // 0a6 mov $0x500,%si
    0xcd, 0x13,                                 // 0a9 int $0x13
    0x72, 0xcd,                                 // 0ab jb 0x7c7a
    0x0f, 0x31,                                 // 0ad rdtsc
    0x66, 0x2b, 0x06, 0x14, 0x05,               // 0af sub 0x514,%eax
    0xbb, 0x00, 0x20,                           // 0b4 mov $0x2000,%bx
    0x8e, 0xc3,                                 // 0b7 mov %bx,%es
    0x8b, 0x3e, 0x1a, 0x05,                     // 0b9 mov 0x51a,%di
    0x66, 0xab,                                 // 0bd stos %eax,%es:(%di)
    0x89, 0x3e, 0x1a, 0x05,                     // 0bf mov %di,0x51a
    0x31, 0xdb,                                 // 0c3 xor %bx,%bx
    0x8e, 0xc3,                                 // 0c5 mov %bx,%es
    0x66, 0x0f, 0xb7, 0x1e, 0x1c, 0x05,         // 0c7 movzwl 0x51c,%ebx
    0x66, 0xa1, 0x08, 0x05,                     // 0cd mov 0x508,%eax
    0x66, 0x01, 0xd8,                           // 0d1 add %ebx,%eax
    0x66, 0xa3, 0x08, 0x05,                     // 0d4 mov %eax,0x508
    0x66, 0x01, 0xc3,                           // 0d8 add %eax,%ebx
    0x66, 0x3b, 0x1e, 0xf0, 0x7d,               // 0db cmp 0x7df0,%ebx
    0x76, 0x08,                                 // 0e0 jbe 0x7cea
    0x66, 0xa1, 0xec, 0x7d,                     // 0e2 mov 0x7dec,%eax
    0x66, 0xa3, 0x08, 0x05,                     // 0e6 mov %eax,0x508
    0xff, 0x0e, 0x18, 0x05,                     // 0ea decw 0x518
    0x75, 0xa2,                                 // 0ee jne 0x7c92
    0xc3,                                       // 0f0 ret
];

/// The sizes of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkSizes {
    /// Untimed-in-the-figures reads of `big_sectors` first.
    pub warmup: u16,
    /// Throughput reads.
    pub big_reads: u16,
    /// Sectors per throughput read (1..=127).
    pub big_sectors: u16,
    /// Latency reads.
    pub small_reads: u16,
    /// Sectors per latency read (1..=127).
    pub small_sectors: u16,
    /// First LBA of the read region.
    pub lba0: u32,
    /// End of the read region (exclusive); the disk has exactly this many sectors.
    pub lba_end: u32,
}

impl Default for BlkSizes {
    /// 8 warm-up reads, 480 reads of 32 KiB (15 MiB), 1000 reads of 4 KiB, over LBA
    /// 2048..32768 of a 16 MiB disk.
    fn default() -> Self {
        BlkSizes {
            warmup: 8,
            big_reads: 480,
            big_sectors: 64,
            small_reads: 1000,
            small_sectors: 8,
            lba0: 2048,
            lba_end: 32768,
        }
    }
}

impl BlkSizes {
    /// Checks the sizes against what the guest can do.
    pub fn validate(&self) -> Result<(), String> {
        let total = self.total_reads();
        if total == 0 || total > MAX_READS {
            return Err(format!("{total} reads in all: expected 1..={MAX_READS}"));
        }
        for (what, s) in [("big", self.big_sectors), ("small", self.small_sectors)] {
            if !(1..=127).contains(&s) {
                return Err(format!("{what} reads of {s} sectors: expected 1..=127"));
            }
        }
        let need = u32::from(self.big_sectors.max(self.small_sectors));
        if self.lba0 < 1 || self.lba_end < self.lba0.saturating_add(need) {
            return Err(format!(
                "region {}..{}: expected 1 <= lba0 and room for a read",
                self.lba0, self.lba_end
            ));
        }
        if u64::from(self.lba_end) * SECTOR < 1 << 20 {
            return Err("the disk must be at least 1 MiB (SeaBIOS's geometry)".into());
        }
        Ok(())
    }

    /// All timed reads (warm-up included).
    pub fn total_reads(&self) -> usize {
        usize::from(self.warmup) + usize::from(self.big_reads) + usize::from(self.small_reads)
    }

    /// The disk's size in bytes.
    pub fn disk_bytes(&self) -> u64 {
        u64::from(self.lba_end) * SECTOR
    }
}

/// The boot sector for `sizes`.
pub fn boot_sector(sizes: &BlkSizes) -> [u8; 512] {
    let mut s = [0u8; 512];
    s[..CODE.len()].copy_from_slice(CODE);
    s[CODE.len()..CODE.len() + MAGIC.len()].copy_from_slice(MAGIC);
    let mut p = PARAMS_AT;
    for w in [
        sizes.warmup,
        sizes.big_reads,
        sizes.big_sectors,
        sizes.small_reads,
        sizes.small_sectors,
        0,
    ] {
        s[p..p + 2].copy_from_slice(&w.to_le_bytes());
        p += 2;
    }
    s[p..p + 4].copy_from_slice(&sizes.lba0.to_le_bytes());
    s[p + 4..p + 8].copy_from_slice(&sizes.lba_end.to_le_bytes());
    s[510] = 0x55;
    s[511] = 0xaa;
    s
}

/// The disk image: [`boot_sector`], then every sector filled with its LBA and a pattern (not
/// zeroes, so no layer can take a shortcut).
pub fn disk_image(sizes: &BlkSizes) -> Vec<u8> {
    let mut img = vec![0u8; sizes.disk_bytes() as usize];
    for (lba, sec) in img.chunks_exact_mut(SECTOR as usize).enumerate().skip(1) {
        sec[..8].copy_from_slice(&(lba as u64).to_le_bytes());
        for (i, b) in sec[8..].iter_mut().enumerate() {
            *b = (i as u8) ^ (lba as u8) | 1;
        }
    }
    img[..512].copy_from_slice(&boot_sector(sizes));
    img
}

/// Writes [`disk_image`] to `path`.
pub fn write_disk_image(path: &Path, sizes: &BlkSizes) -> Result<(), String> {
    sizes.validate()?;
    std::fs::write(path, disk_image(sizes)).map_err(|e| format!("{}: {e}", path.display()))
}

/// QEMU's command line (after the program) for the image at `image`, the debugcon output into
/// `dump`: KVM, `pc`, [`QEMU_CPU`](crate::guest_pio::QEMU_CPU), 128 MiB, no default devices, Debian's SeaBIOS, the image
/// read-only as a `virtio-blk-pci` with the legacy interface off (`cache=writethrough`: reads
/// through the host page cache, as the native device's `pread`), `isa-debug-exit` at 0xf4 and
/// `isa-debugcon` at 0x402.
pub fn qemu_args(image: &Path, dump: &Path) -> Vec<String> {
    [
        "-accel".to_string(),
        "kvm".into(),
        "-M".into(),
        "pc".into(),
        "-cpu".into(),
        crate::guest_pio::QEMU_CPU.into(),
        "-m".into(),
        "128".into(),
        "-nodefaults".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-bios".into(),
        SEABIOS_PATH.into(),
        "-drive".into(),
        format!(
            "file={},if=none,id=d0,format=raw,cache=writethrough,readonly=on",
            image.display()
        ),
        "-device".into(),
        "virtio-blk-pci,drive=d0,disable-legacy=on".into(),
        "-device".into(),
        "isa-debug-exit,iobase=0xf4,iosize=0x01".into(),
        "-chardev".into(),
        format!("file,id=vblk,path={}", dump.display()),
        "-device".into(),
        "isa-debugcon,iobase=0x402,chardev=vblk".into(),
    ]
    .to_vec()
}

/// The TSC deltas of one run, per phase, in cycles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkDeltas {
    /// The warm-up reads.
    pub warmup: Vec<u32>,
    /// The throughput reads.
    pub big: Vec<u32>,
    /// The latency reads.
    pub small: Vec<u32>,
}

/// Finds the deltas after the last [`MAGIC`] in a debugcon output; `None` when the dump is
/// missing or short.
pub fn parse_dump(debugcon: &[u8], sizes: &BlkSizes) -> Option<BlkDeltas> {
    let at = debugcon.windows(MAGIC.len()).rposition(|w| w == MAGIC)? + MAGIC.len();
    let n = sizes.total_reads();
    let bytes = debugcon.get(at..at + 4 * n)?;
    let words: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let (w, b) = (usize::from(sizes.warmup), usize::from(sizes.big_reads));
    Some(BlkDeltas {
        warmup: words[..w].to_vec(),
        big: words[w..w + b].to_vec(),
        small: words[w + b..].to_vec(),
    })
}

/// How the native device takes its queue notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyPath {
    /// Each one an I/O request to the ioreq client (the BAR handler serves the queue).
    Ioreq,
    /// IOEVENTFD: the HSM's in-kernel ioeventfd client completes the write and signals the
    /// device's eventfd, its worker thread serves the queue (one VM exit per notification).
    Ioeventfd,
    /// IOEVENTFD, matched by KVM itself as well (`KVM_IOEVENTFD`: no exit to the engine).
    #[default]
    KvmIoeventfd,
}

/// What a run on the KVM engine returned.
#[derive(Debug, Clone)]
pub struct NativeBlkRun {
    /// The guest's deltas.
    pub deltas: BlkDeltas,
    /// Descriptor chains the virtio-blk device completed (the boot sector's read included).
    pub chains: u64,
    /// VM exits the KVM engine handled.
    pub exits: u64,
    /// Queue notifications the device saw (through the BAR or the ioeventfds).
    pub notifies: u64,
    /// Worker wake-ups by a queue's ioeventfd (0 with [`NotifyPath::Ioreq`]).
    pub ioeventfd_wakeups: u64,
    /// Wall time from START_VM to the debug exit.
    pub elapsed: Duration,
}

/// Boots the image at `image` on the KVM engine with the native virtio-blk (read-only), in the
/// given completion mode, without SeaBIOS's serial console (as under [`qemu_args`]), its queue
/// notifications taken as `notify` says ([`RunConfig::disk_ioeventfd`],
/// [`RunConfig::kvm_ioeventfd`]); fails when KVM or SeaBIOS is missing, or when the guest does
/// not reach its debug exit within `timeout`.
pub fn run_native(
    image: &Path,
    sizes: &BlkSizes,
    polling: bool,
    notify: NotifyPath,
    timeout: Duration,
) -> Result<NativeBlkRun, String> {
    let r = run_guest(&RunConfig {
        payload: Payload::Firmware(SEABIOS_PATH.into()),
        polling,
        disk_ioeventfd: notify != NotifyPath::Ioreq,
        kvm_ioeventfd: notify == NotifyPath::KvmIoeventfd,
        console: Console::Capture,
        timeout: Some(timeout),
        disk: Some(image.to_path_buf()),
        disk_read_only: true,
        // QEMU's SeaBIOS has no serial console here either (`-nodefaults`): the same firmware
        // path, without an LSR poll per wait.
        sercon: false,
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    if r.end != RunEnd::DebugExit(EXIT_VALUE) {
        return Err(format!(
            "the guest did not finish: {} (COM1: {:?})",
            crate::run::describe_end(&r.end),
            String::from_utf8_lossy(&r.serial)
        ));
    }
    let deltas = parse_dump(&r.debugcon, sizes)
        .ok_or_else(|| "the guest's dump is missing or short".to_string())?;
    Ok(NativeBlkRun {
        deltas,
        chains: r.virtio_blk.map(|s| s.chains).unwrap_or(0),
        exits: r.kvm.exits,
        notifies: r.virtio_blk.map(|s| s.notifies).unwrap_or(0),
        ioeventfd_wakeups: r.virtio_blk_notifier.map(|s| s.wakeups).unwrap_or(0),
        elapsed: r.elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_layout() {
        let s = BlkSizes::default();
        s.validate().unwrap();
        let b = boot_sector(&s);
        assert_eq!(&b[0xf1..0xf9], MAGIC);
        assert_eq!(u16::from_le_bytes([b[0x1e2], b[0x1e3]]), 480);
        assert_eq!(
            u32::from_le_bytes([b[0x1f0], b[0x1f1], b[0x1f2], b[0x1f3]]),
            32768
        );
        assert_eq!(&b[510..], &[0x55, 0xaa]);
        let img = disk_image(&s);
        assert_eq!(img.len(), 16 << 20);
        assert_eq!(&img[512..520], &1u64.to_le_bytes());
    }

    #[test]
    fn dump_parses_after_the_last_marker() {
        let s = BlkSizes {
            warmup: 1,
            big_reads: 2,
            small_reads: 1,
            ..Default::default()
        };
        let mut d = b"SeaBIOS log VBLKDUMP? no\n".to_vec();
        d.extend_from_slice(MAGIC);
        for v in [9u32, 1, 2, 3] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        let p = parse_dump(&d, &s).unwrap();
        assert_eq!(p.warmup, vec![9]);
        assert_eq!(p.big, vec![1, 2]);
        assert_eq!(p.small, vec![3]);
        assert_eq!(parse_dump(&d[..d.len() - 1], &s), None);
        assert!(s.validate().is_ok());
        assert!(
            BlkSizes {
                big_sectors: 200,
                ..s
            }
            .validate()
            .is_err()
        );
    }
}
