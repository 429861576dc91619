//! The modern virtio-pci transport and virtio-blk / virtio-rng, driven the way a driver does:
//! configuration space through `PciDevice`, BAR 4 through `IoDevice`, rings laid out in a
//! `GuestMemory` by the test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use acrn_hsm::devices::virtio::queue::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, QueueError};
use acrn_hsm::devices::virtio::{
    CAP_COMMON, CAP_DEVICE, CAP_ISR, CAP_NOTIFY, CAP_PCI_CFG, CompleteError, DEVICE_CFG_OFFSET,
    F_INDIRECT_DESC, F_RING_EVENT_IDX, F_VERSION_1, ISR_OFFSET, Interrupt, MSIX_TABLE_OFFSET,
    NOTIFY_OFFSET, RecordedInterrupts, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK,
    STATUS_FEATURES_OK, STATUS_NEEDS_RESET, VirtioBar, VirtioBlk, VirtioPci, VirtioRng,
};
use acrn_hsm::{GuestMemory, IoDevice, PciDevice, UserPages};

const RAM: u64 = 0x10_0000;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;

struct Drv {
    _ram: UserPages,
    mem: Arc<GuestMemory>,
    irq: Arc<RecordedInterrupts>,
    t: VirtioPci,
    bar: VirtioBar,
    size: u16,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

fn temp_disk(name: &str, sectors: u64) -> PathBuf {
    let p = std::env::temp_dir().join(format!("virtio-{}-{name}.img", std::process::id()));
    let mut data = vec![0u8; (sectors * 512) as usize];
    for (s, chunk) in data.chunks_mut(512).enumerate() {
        chunk.fill(s as u8);
        chunk[..8].copy_from_slice(format!("SECT{s:04}").as_bytes());
    }
    std::fs::write(&p, data).unwrap();
    p
}

impl Drv {
    fn new(dev: Box<dyn acrn_hsm::devices::virtio::VirtioDevice>) -> Drv {
        let ram = UserPages::new(RAM as usize).unwrap();
        let mem = GuestMemory::new();
        mem.insert(0, ram.pin()).unwrap();
        let mem = Arc::new(mem);
        let irq = Arc::new(RecordedInterrupts::default());
        let t = VirtioPci::new(dev, mem.clone(), irq.clone());
        let bar = t.bar();
        let mut d = Drv {
            _ram: ram,
            mem,
            irq,
            t,
            bar,
            size: 0,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
        };
        d.cfg_w(0x3c, 1, 10);
        d
    }
    fn blk(path: &Path, ro: bool) -> Drv {
        Drv::new(Box::new(VirtioBlk::open(path, ro).unwrap()))
    }
    fn cfg_r(&mut self, reg: u32, size: u8) -> u32 {
        self.t.cfg_read(reg, size)
    }
    fn cfg_w(&mut self, reg: u32, size: u8, v: u32) {
        self.t.cfg_write(reg, size, v)
    }
    fn r(&mut self, off: u64, size: u8) -> u64 {
        self.bar.read(off, size)
    }
    fn w(&mut self, off: u64, size: u8, v: u64) {
        self.bar.write(off, size, v)
    }
    fn status(&mut self) -> u8 {
        self.r(0x14, 1) as u8
    }
    fn device_features(&mut self) -> u64 {
        self.w(0x00, 4, 0);
        let lo = self.r(0x04, 4);
        self.w(0x00, 4, 1);
        lo | (self.r(0x04, 4) << 32)
    }
    fn set_driver_features(&mut self, f: u64) {
        self.w(0x08, 4, 0);
        self.w(0x0c, 4, f & 0xffff_ffff);
        self.w(0x08, 4, 1);
        self.w(0x0c, 4, f >> 32);
    }
    /// The init sequence of §3.1.1 up to FEATURES_OK; returns the status read back.
    fn negotiate(&mut self, f: u64) -> u8 {
        self.w(0x14, 1, 0);
        self.w(0x14, 1, u64::from(STATUS_ACKNOWLEDGE));
        self.w(0x14, 1, u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER));
        self.set_driver_features(f);
        self.w(
            0x14,
            1,
            u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK),
        );
        self.status()
    }
    fn setup_queue(&mut self, size: u16) {
        self.w(0x16, 2, 0);
        self.w(0x18, 2, u64::from(size));
        // 64-bit fields as two 32-bit halves, as many drivers write them.
        self.w(0x20, 4, DESC);
        self.w(0x24, 4, 0);
        self.w(0x28, 8, AVAIL);
        self.w(0x30, 8, USED);
        self.w(0x1c, 2, 1);
        self.size = size;
    }
    fn start(&mut self, f: u64, size: u16) {
        assert_ne!(self.negotiate(f) & STATUS_FEATURES_OK, 0);
        self.setup_queue(size);
        self.w(
            0x14,
            1,
            u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK),
        );
    }
    fn put_desc_at(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.mem.write(table + 16 * u64::from(i), &d).unwrap();
    }
    /// A chain of `(addr, len, writable)` in the descriptor table; returns its head.
    fn chain(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, &(a, l, w)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % self.size;
            let last = k + 1 == bufs.len();
            let flags = if last { 0 } else { DESC_F_NEXT } | if w { DESC_F_WRITE } else { 0 };
            self.put_desc_at(DESC, i, a, l, flags, (i + 1) % self.size);
        }
        self.next_desc = (head + bufs.len() as u16) % self.size;
        head
    }
    fn publish(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        self.mem
            .write_le(AVAIL + 4 + 2 * slot, 2, u64::from(head))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_le(AVAIL + 2, 2, u64::from(self.avail_idx))
            .unwrap();
    }
    fn kick(&mut self) {
        self.w(NOTIFY_OFFSET, 2, 0);
    }
    /// The used elements added since the last call.
    fn used(&mut self) -> Vec<(u32, u32)> {
        let idx = self.mem.read_le(USED + 2, 2).unwrap() as u16;
        let mut out = Vec::new();
        while self.used_seen != idx {
            let slot = u64::from(self.used_seen % self.size);
            let id = self.mem.read_le(USED + 4 + 8 * slot, 4).unwrap() as u32;
            let len = self.mem.read_le(USED + 8 + 8 * slot, 4).unwrap() as u32;
            out.push((id, len));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }
    /// A virtio-blk request: header at 0x10000, data at 0x20000, status at 0x30000.
    fn blk_request(&mut self, ty: u32, sector: u64, data: &[u8], data_in: u32) -> (u8, u32) {
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&ty.to_le_bytes());
        hdr[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write(0x10000, &hdr).unwrap();
        self.mem.write(0x30000, &[0xff]).unwrap();
        let mut bufs = vec![(0x10000, 16, false)];
        if !data.is_empty() {
            self.mem.write(0x20000, data).unwrap();
            bufs.push((0x20000, data.len() as u32, false));
        }
        if data_in > 0 {
            bufs.push((0x20000, data_in, true));
        }
        bufs.push((0x30000, 1, true));
        let head = self.chain(&bufs);
        self.publish(head);
        self.kick();
        let used = self.used();
        assert_eq!(used.len(), 1, "one completion");
        assert_eq!(used[0].0, u32::from(head));
        let st = self.mem.read_le(0x30000, 1).unwrap() as u8;
        (st, used[0].1)
    }
}

/// The capabilities: `cfg_type -> (at, bar, offset, length)` and the MSI-X capability.
/// `(cfg_type, at, bar, offset, length)`.
type VendorCap = (u8, u32, u8, u32, u32);

fn caps(d: &mut Drv) -> (Vec<VendorCap>, Option<u32>) {
    assert_ne!(d.cfg_r(6, 2) & 0x10, 0, "capabilities list");
    let mut at = d.cfg_r(0x34, 1);
    let (mut out, mut msix) = (Vec::new(), None);
    let mut n = 0;
    while at != 0 {
        n += 1;
        assert!(n < 16, "cap list loops");
        match d.cfg_r(at, 1) {
            0x09 => out.push((
                d.cfg_r(at + 3, 1) as u8,
                at,
                d.cfg_r(at + 4, 1) as u8,
                d.cfg_r(at + 8, 4),
                d.cfg_r(at + 12, 4),
            )),
            0x11 => msix = Some(at),
            x => panic!("unexpected cap {x:#x}"),
        }
        at = d.cfg_r(at + 1, 1);
    }
    (out, msix)
}

#[test]
fn header_and_capability_list() {
    let p = temp_disk("caps", 8);
    let mut d = Drv::blk(&p, false);
    assert_eq!(
        d.cfg_r(0, 4),
        0x1042_1af4,
        "vendor 0x1af4, device 0x1040 + 2"
    );
    assert_eq!(d.cfg_r(8, 1), 1, "revision 1 (modern)");
    assert_eq!(d.cfg_r(0x0a, 2), 0x0100, "mass storage");
    assert_eq!(d.cfg_r(0x2c, 2), 0x1af4);
    assert_eq!(d.cfg_r(0x3d, 1), 1, "INTA");
    let (c, msix) = caps(&mut d);
    let types: Vec<u8> = c.iter().map(|x| x.0).collect();
    assert_eq!(
        types,
        vec![CAP_COMMON, CAP_NOTIFY, CAP_ISR, CAP_DEVICE, CAP_PCI_CFG]
    );
    for &(ty, _, bar, off, len) in &c[..4] {
        assert_eq!(bar, 4, "cfg_type {ty} in BAR 4");
        assert!(len > 0);
        assert!(off + len <= 0x8000);
    }
    let notify = c[1].1;
    assert_eq!(d.cfg_r(notify + 2, 1), 20, "notify cap_len");
    assert_eq!(d.cfg_r(notify + 16, 4), 4, "notify_off_multiplier");
    assert_eq!(c[0].3, 0);
    assert_eq!(c[0].4, 0x38);
    let m = msix.unwrap();
    assert_eq!(d.cfg_r(m + 2, 2) & 0x7ff, 1, "two vectors (queue + config)");
    assert_eq!(d.cfg_r(m + 4, 4), MSIX_TABLE_OFFSET as u32 | 4);
    // BAR 4: 32 KiB memory.
    d.cfg_w(0x20, 4, 0xffff_ffff);
    assert_eq!(d.cfg_r(0x20, 4), 0xffff_8000);
    // The capabilities are read-only.
    d.cfg_w(0x40, 4, 0);
    assert_eq!(d.cfg_r(0x40, 1), 0x09);
    let _ = std::fs::remove_file(p);
}

#[test]
fn feature_negotiation() {
    let p = temp_disk("feat", 8);
    let mut d = Drv::blk(&p, false);
    let offered = d.device_features();
    for f in [
        F_VERSION_1,
        F_INDIRECT_DESC,
        F_RING_EVENT_IDX,
        1 << 9,
        1 << 6,
    ] {
        assert_ne!(offered & f, 0, "{f:#x} offered");
    }
    assert_eq!(offered & (1 << 5), 0, "not read-only");
    // A feature the device does not offer: FEATURES_OK does not stick.
    assert_eq!(d.negotiate(F_VERSION_1 | (1 << 3)) & STATUS_FEATURES_OK, 0);
    // Without VERSION_1 a modern device refuses too.
    assert_eq!(d.negotiate(1 << 9) & STATUS_FEATURES_OK, 0);
    // Only offered ones: accepted, and the accepted set reads back.
    let want = F_VERSION_1 | F_INDIRECT_DESC | (1 << 9);
    assert_ne!(d.negotiate(want) & STATUS_FEATURES_OK, 0);
    assert_eq!(d.t.driver_features(), want);
    // After FEATURES_OK the driver features are frozen.
    d.set_driver_features(F_VERSION_1);
    assert_eq!(d.t.driver_features(), want);
    let _ = std::fs::remove_file(p);
}

#[test]
fn reset_queue_setup_and_notify_offsets() {
    let p = temp_disk("reset", 8);
    let mut d = Drv::blk(&p, false);
    assert_eq!(d.r(0x12, 2), 1, "num_queues");
    d.w(0x16, 2, 0);
    assert_eq!(d.r(0x18, 2), 256, "queue_size = max");
    assert_eq!(d.r(0x1e, 2), 0, "queue_notify_off");
    assert_eq!(d.r(0x1a, 2), 0xffff, "no vector");
    d.start(F_VERSION_1, 8);
    assert_eq!(d.r(0x1c, 2), 1, "enabled");
    assert_eq!(d.r(0x18, 2), 8);
    assert_eq!(d.r(0x20, 8), DESC);
    assert_eq!(d.r(0x24, 4), 0);
    // Queue registers are frozen while enabled.
    d.w(0x20, 8, 0x9000);
    assert_eq!(d.r(0x20, 8), DESC);
    // A queue that does not exist reads 0.
    d.w(0x16, 2, 5);
    assert_eq!(d.r(0x18, 2), 0);
    // Writing 0 to the status resets everything.
    d.w(0x14, 1, 0);
    assert_eq!(d.status(), 0);
    d.w(0x16, 2, 0);
    assert_eq!(d.r(0x1c, 2), 0, "queue disabled");
    assert_eq!(d.r(0x18, 2), 256, "size back to max");
    assert_eq!(d.r(0x20, 8), 0);
    assert_eq!(d.t.driver_features(), 0);
    let _ = std::fs::remove_file(p);
}

#[test]
fn blk_config_and_requests() {
    let p = temp_disk("rw", 64);
    let mut d = Drv::blk(&p, false);
    assert_eq!(
        d.r(DEVICE_CFG_OFFSET, 8),
        64,
        "capacity in 512-byte sectors"
    );
    assert_eq!(d.r(DEVICE_CFG_OFFSET, 4), 64, "low half");
    assert_eq!(d.r(DEVICE_CFG_OFFSET + 4, 4), 0, "high half");
    assert_eq!(d.r(DEVICE_CFG_OFFSET + 0x14, 4), 512, "blk_size");
    assert_eq!(d.r(DEVICE_CFG_OFFSET + 0x0c, 4), 254, "seg_max");
    d.start(F_VERSION_1 | (1 << 9) | (1 << 14), 16);

    // IN: sectors 3 and 4.
    let (st, len) = d.blk_request(0, 3, &[], 1024);
    assert_eq!((st, len), (0, 1025));
    let mut b = vec![0u8; 1024];
    d.mem.read(0x20000, &mut b).unwrap();
    assert_eq!(&b[..8], b"SECT0003");
    assert_eq!(&b[512..520], b"SECT0004");
    assert_eq!(b[100], 3);

    // OUT then FLUSH: durable in the file.
    let data = vec![0xabu8; 512];
    assert_eq!(d.blk_request(1, 5, &data, 0), (0, 1));
    assert_eq!(d.blk_request(4, 0, &[], 0), (0, 1));
    let file = std::fs::read(&p).unwrap();
    assert!(file[5 * 512..6 * 512].iter().all(|&x| x == 0xab));

    // GET_ID: 20 bytes.
    let (st, len) = d.blk_request(8, 0, &[], 20);
    assert_eq!((st, len), (0, 21));
    let mut id = [0u8; 20];
    d.mem.read(0x20000, &mut id).unwrap();
    assert!(id.starts_with(b"virtio-"), "{id:?}");

    // Out of range, not a multiple of 512, unknown type.
    assert_eq!(d.blk_request(0, 63, &[], 1024).0, 1, "past the end: IOERR");
    assert_eq!(d.blk_request(0, u64::MAX / 256, &[], 512).0, 1, "overflow");
    assert_eq!(d.blk_request(0, 0, &[], 100).0, 1, "not sectors");
    assert_eq!(d.blk_request(1, 64, &data, 0).0, 1, "write past the end");
    assert_eq!(d.blk_request(99, 0, &[], 0).0, 2, "UNSUPP");

    // WRITE_ZEROES over sector 5.
    let mut seg = [0u8; 16];
    seg[0..8].copy_from_slice(&5u64.to_le_bytes());
    seg[8..12].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(d.blk_request(13, 0, &seg, 0).0, 0);
    let file = std::fs::read(&p).unwrap();
    assert!(file[5 * 512..6 * 512].iter().all(|&x| x == 0));
    // DISCARD: one segment without flags; the unmap flag or unknown flags are UNSUPP; two
    // segments (max_discard_seg is 1) IOERR.
    assert_eq!(d.blk_request(11, 0, &seg, 0).0, 0);
    seg[12] = 1;
    assert_eq!(d.blk_request(11, 0, &seg, 0).0, 2, "unmap on discard");
    seg[12] = 2;
    assert_eq!(d.blk_request(13, 0, &seg, 0).0, 2, "unknown flag");
    seg[12] = 0;
    let two = [seg, seg].concat();
    assert_eq!(d.blk_request(11, 0, &two, 0).0, 1, "two segments");
    seg[8..12].copy_from_slice(&64u32.to_le_bytes());
    assert_eq!(d.blk_request(13, 1, &seg, 0).0, 1, "past the end");

    // Queue interrupts went to INTx line 10 (no MSI-X), ISR bit 0.
    let irqs = d.irq.take();
    assert_eq!(
        irqs.first(),
        Some(&Interrupt::Intx {
            gsi: 10,
            asserted: true
        })
    );
    assert_eq!(d.r(ISR_OFFSET, 1), 1, "queue interrupt");
    assert_eq!(d.r(ISR_OFFSET, 1), 0, "read clears");
    assert_eq!(
        d.irq.take(),
        vec![Interrupt::Intx {
            gsi: 10,
            asserted: false
        }]
    );
    let _ = std::fs::remove_file(p);
}

#[test]
fn read_only_disk() {
    let p = temp_disk("ro", 8);
    let mut d = Drv::blk(&p, true);
    assert_ne!(d.device_features() & (1 << 5), 0, "F_RO");
    d.start(F_VERSION_1 | (1 << 5), 8);
    assert_eq!(d.blk_request(1, 0, &[0u8; 512], 0).0, 1, "OUT: IOERR");
    assert_eq!(d.blk_request(0, 0, &[], 512).0, 0, "IN works");
    assert_eq!(&std::fs::read(&p).unwrap()[..8], b"SECT0000");
    let _ = std::fs::remove_file(p);
}

#[test]
fn indirect_table_and_event_index() {
    let p = temp_disk("ind", 8);
    let mut d = Drv::blk(&p, false);
    d.start(F_VERSION_1 | F_INDIRECT_DESC | F_RING_EVENT_IDX, 8);
    // used_event = 5: no interrupt before the used idx passes it.
    d.mem.write_le(AVAIL + 4 + 2 * 8, 2, 5).unwrap();
    let hdr = {
        let mut h = [0u8; 16];
        h[8..16].copy_from_slice(&2u64.to_le_bytes());
        h
    };
    d.mem.write(0x10000, &hdr).unwrap();
    // The indirect table at 0x40000: header, data, status.
    d.put_desc_at(0x40000, 0, 0x10000, 16, DESC_F_NEXT, 1);
    d.put_desc_at(0x40000, 1, 0x20000, 512, DESC_F_NEXT | DESC_F_WRITE, 2);
    d.put_desc_at(0x40000, 2, 0x30000, 1, DESC_F_WRITE, 0);
    d.put_desc_at(DESC, 0, 0x40000, 48, DESC_F_INDIRECT, 0);
    d.publish(0);
    d.kick();
    assert_eq!(d.used(), vec![(0, 513)]);
    let mut b = [0u8; 8];
    d.mem.read(0x20000, &mut b).unwrap();
    assert_eq!(&b, b"SECT0002");
    assert_eq!(d.irq.take(), vec![], "suppressed by used_event");
    // The device published avail_event = its next entry.
    assert_eq!(d.mem.read_le(USED + 4 + 8 * 8, 2).unwrap(), 1);
    // used_event = 1 now: the next completion (used idx 1 -> 2) interrupts.
    d.mem.write_le(AVAIL + 4 + 2 * 8, 2, 1).unwrap();
    d.publish(0);
    d.kick();
    assert_eq!(d.used().len(), 1);
    assert_eq!(d.irq.take().len(), 1);
    let _ = std::fs::remove_file(p);
}

#[test]
fn broken_rings_set_needs_reset() {
    let p = temp_disk("bad", 8);
    type Setup = fn(&mut Drv);
    type Check = fn(&QueueError) -> bool;
    let cases: Vec<(&str, Setup, Check)> = vec![
        (
            "a loop",
            |d| {
                d.put_desc_at(DESC, 0, 0x10000, 16, DESC_F_NEXT, 1);
                d.put_desc_at(DESC, 1, 0x10000, 16, DESC_F_NEXT, 0);
                d.publish(0);
            },
            |e| matches!(e, QueueError::ChainTooLong { .. }),
        ),
        (
            "head out of range",
            |d| d.publish(9),
            |e| matches!(e, QueueError::IndexOutOfRange { .. }),
        ),
        (
            "buffer outside RAM",
            |d| {
                d.put_desc_at(DESC, 0, RAM - 8, 16, 0, 0);
                d.publish(0);
            },
            |e| matches!(e, QueueError::Memory(_)),
        ),
        (
            "indirect not negotiated",
            |d| {
                d.put_desc_at(DESC, 0, 0x40000, 16, DESC_F_INDIRECT, 0);
                d.publish(0);
            },
            |e| *e == QueueError::IndirectNotNegotiated,
        ),
        (
            "avail idx jumps",
            |d| {
                d.mem.write_le(AVAIL + 2, 2, 100).unwrap();
            },
            |e| matches!(e, QueueError::AvailIdx { .. }),
        ),
        (
            "no status byte",
            |d| {
                let h = d.chain(&[(0x10000, 16, false)]);
                d.publish(h);
            },
            |e| matches!(e, QueueError::BadRequest(_)),
        ),
        (
            "readable after writable",
            |d| {
                let h = d.chain(&[(0x10000, 16, true), (0x20000, 16, false)]);
                d.publish(h);
            },
            |e| *e == QueueError::ReadAfterWrite,
        ),
    ];
    for (name, setup, check) in cases {
        let mut d = Drv::blk(&p, false);
        d.start(F_VERSION_1, 8);
        setup(&mut d);
        d.kick();
        assert_ne!(d.status() & STATUS_NEEDS_RESET, 0, "{name}");
        let e = d.t.last_error().unwrap();
        assert!(check(&e), "{name}: {e}");
        assert_eq!(d.r(ISR_OFFSET, 1), 2, "{name}: configuration change");
        assert!(d.used().is_empty(), "{name}");
        // The driver resets and starts again: the device works.
        d.avail_idx = 0;
        d.used_seen = 0;
        d.mem.write(AVAIL, &[0u8; 4]).unwrap();
        d.mem.write(USED, &[0u8; 4]).unwrap();
        d.next_desc = 0;
        d.start(F_VERSION_1, 8);
        assert_eq!(
            d.blk_request(0, 1, &[], 512),
            (0, 513),
            "{name}: after reset"
        );
    }
    // A queue layout outside RAM is refused at queue_enable.
    let mut d = Drv::blk(&p, false);
    assert_ne!(d.negotiate(F_VERSION_1) & STATUS_FEATURES_OK, 0);
    d.w(0x16, 2, 0);
    d.w(0x20, 8, RAM - 16);
    d.w(0x1c, 2, 1);
    assert_ne!(d.status() & STATUS_NEEDS_RESET, 0);
    assert_eq!(d.r(0x1c, 2), 0);
    // Size not a power of two.
    d.w(0x14, 1, 0);
    d.negotiate(F_VERSION_1);
    d.w(0x18, 2, 3);
    d.w(0x20, 8, DESC);
    d.w(0x28, 8, AVAIL);
    d.w(0x30, 8, USED);
    d.w(0x1c, 2, 1);
    assert!(matches!(
        d.t.last_error(),
        Some(QueueError::BadSize { size: 3, .. })
    ));
    let _ = std::fs::remove_file(p);
}

#[test]
fn pci_cfg_access_capability_reaches_the_bar() {
    let p = temp_disk("pcicfg", 16);
    let mut d = Drv::blk(&p, false);
    let (c, _) = caps(&mut d);
    let at = c.iter().find(|x| x.0 == CAP_PCI_CFG).unwrap().1;
    // Read the capacity (device config, BAR 4 + 0x2000) through the window.
    d.cfg_w(at + 4, 1, 4);
    d.cfg_w(at + 8, 4, DEVICE_CFG_OFFSET as u32);
    d.cfg_w(at + 12, 4, 4);
    assert_eq!(d.cfg_r(at + 16, 4), 16);
    // Write the device status through it.
    d.cfg_w(at + 8, 4, 0x14);
    d.cfg_w(at + 12, 4, 1);
    d.cfg_w(at + 16, 1, u32::from(STATUS_ACKNOWLEDGE));
    assert_eq!(d.status(), STATUS_ACKNOWLEDGE);
    // A window on another BAR or of a bad length does nothing.
    d.cfg_w(at + 4, 1, 0);
    assert_eq!(d.cfg_r(at + 16, 1) as u8, STATUS_ACKNOWLEDGE, "stale data");
    let _ = std::fs::remove_file(p);
}

#[test]
fn msix_vectors() {
    let mut d = Drv::new(Box::new(VirtioRng::new()));
    let (_, msix) = caps(&mut d);
    let m = msix.unwrap();
    // Table entry 0: the queue; entry 1: configuration.
    for (v, data) in [(0u64, 0x41u64), (1, 0x42)] {
        let e = MSIX_TABLE_OFFSET + 16 * v;
        d.w(e, 4, 0xfee0_0000);
        d.w(e + 4, 4, 0);
        d.w(e + 8, 4, data);
        d.w(e + 12, 4, 0);
    }
    d.cfg_w(m + 2, 2, 0x8000);
    assert_ne!(d.cfg_r(m + 2, 2) & 0x8000, 0);
    assert_ne!(d.negotiate(F_VERSION_1) & STATUS_FEATURES_OK, 0);
    d.w(0x10, 2, 1);
    assert_eq!(d.r(0x10, 2), 1);
    d.w(0x10, 2, 7);
    assert_eq!(d.r(0x10, 2), 0xffff, "no such vector");
    d.w(0x10, 2, 1);
    d.w(0x16, 2, 0);
    d.w(0x1a, 2, 0);
    d.setup_queue(4);
    d.w(0x14, 1, 0x0f);
    let h = d.chain(&[(0x50000, 32, true)]);
    d.publish(h);
    d.kick();
    assert_eq!(d.used(), vec![(0, 32)]);
    assert_eq!(
        d.irq.take(),
        vec![Interrupt::Msi {
            addr: 0xfee0_0000,
            data: 0x41
        }]
    );
    assert_eq!(d.r(ISR_OFFSET, 1), 0, "no ISR bit with MSI-X");
    // Masked: pending, delivered on unmask.
    d.w(MSIX_TABLE_OFFSET + 12, 4, 1);
    let h = d.chain(&[(0x50000, 32, true)]);
    d.publish(h);
    d.kick();
    assert_eq!(d.irq.take(), vec![]);
    assert_eq!(d.r(0x5000, 8), 1, "PBA bit 0");
    d.w(MSIX_TABLE_OFFSET + 12, 4, 0);
    assert_eq!(d.irq.take().len(), 1);
    assert_eq!(d.r(0x5000, 8), 0);
    // A broken ring: the configuration vector.
    d.publish(7);
    d.kick();
    assert_eq!(
        d.irq.take(),
        vec![Interrupt::Msi {
            addr: 0xfee0_0000,
            data: 0x42
        }]
    );
}

#[test]
fn rng_fills_the_buffer() {
    let mut d = Drv::new(Box::new(VirtioRng::new()));
    d.start(F_VERSION_1, 4);
    d.mem.write(0x50000, &[0u8; 64]).unwrap();
    let h = d.chain(&[(0x50000, 64, true)]);
    d.publish(h);
    d.kick();
    assert_eq!(d.used(), vec![(u32::from(h), 64)]);
    let mut b = [0u8; 64];
    d.mem.read(0x50000, &mut b).unwrap();
    assert!(b.iter().any(|&x| x != 0));
    assert_eq!(d.r(0x12, 2), 1);
    assert_eq!(d.cfg_r(0, 4), 0x1044_1af4);
}

/// Through the dispatcher, as the ioreq client serves it: the firmware programs BAR 4 and
/// enables memory decoding, the BAR's window reaches the transport, the device-model reset
/// takes the device and its route back to power-on.
#[test]
fn through_the_dispatcher_and_the_dm_reset() {
    use acrn_hsm::client::{Bdf, Dispatcher, Kind, Request};
    let p = temp_disk("dispatch", 8);
    let d = Drv::blk(&p, false);
    let bdf = Bdf::new(0, 3, 0);
    let mut disp = Dispatcher::new();
    let (cfg, bars) = d.t.clone().into_parts();
    disp.add_pci_with_bars(bdf, cfg, bars).unwrap();
    let req = |kind: Kind, is_read: bool, address: u64, reg: u32, size: u64, value: u64| Request {
        vcpu: 0,
        kind,
        is_read,
        direction: u32::from(!is_read),
        address,
        size,
        value,
        bdf,
        reg,
        raw_bdf: (0, 3, 0),
    };
    let cfg_w = |disp: &mut Dispatcher, reg: u32, v: u64| {
        disp.dispatch(&req(Kind::PciCfg, false, 0, reg, 4, v));
    };
    let mmio_r = |disp: &mut Dispatcher, a: u64, size: u64| {
        disp.dispatch(&req(Kind::Mmio, true, a, 0, size, 0)).value
    };
    assert_eq!(
        disp.dispatch(&req(Kind::PciCfg, true, 0, 0, 4, 0)).value,
        0x1042_1af4
    );
    cfg_w(&mut disp, 0x20, 0xfebf_8000);
    cfg_w(&mut disp, 0x04, 0x0006);
    assert_eq!(
        mmio_r(&mut disp, 0xfebf_8012, 2),
        1,
        "num_queues through BAR 4"
    );
    assert_eq!(mmio_r(&mut disp, 0xfebf_a000, 8), 8, "capacity");
    disp.dispatch(&req(Kind::Mmio, false, 0xfebf_8014, 0, 1, 1));
    assert_eq!(d.t.status(), 1);
    disp.reset_devices();
    assert_eq!(d.t.status(), 0, "the DM reset resets the device");
    assert_eq!(
        mmio_r(&mut disp, 0xfebf_8012, 2),
        0xffff,
        "BAR unprogrammed: unclaimed"
    );
    let _ = std::fs::remove_file(p);
}

/// A deferred device: chains queued for a server, completed later in any order.
fn deferred_drv() -> Drv {
    use acrn_hsm::devices::virtio::DeferredVirtio;
    let dev = DeferredVirtio::new("js", 4, 0, vec![1, 2, 3, 4], vec![8]);
    Drv::new(Box::new(dev))
}

#[test]
fn deferred_chains_complete_out_of_order() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut d = deferred_drv();
    let woken = Arc::new(AtomicUsize::new(0));
    let w = woken.clone();
    d.t.set_deferred_hook(Arc::new(move || {
        w.fetch_add(1, Ordering::Relaxed);
    }));
    d.start(F_VERSION_1, 8);
    assert_eq!(d.r(DEVICE_CFG_OFFSET + 2, 2), 0x0403);
    let a = d.chain(&[(0x40000, 16, false), (0x50000, 32, true)]);
    d.publish(a);
    let b = d.chain(&[(0x60000, 64, true)]);
    d.publish(b);
    d.kick();
    assert_eq!(woken.load(Ordering::Relaxed), 1);
    assert_eq!(d.used(), vec![], "nothing completed yet");
    let chains = d.t.take_deferred();
    assert_eq!(chains.len(), 2);
    assert_eq!((chains[0].queue, chains[0].chain.head), (0, a));
    assert_eq!(chains[0].chain.bufs.len(), 2);
    assert_eq!(chains[1].chain.head, b);
    assert_eq!(d.t.in_flight(), 2);
    let ep = chains[0].epoch;
    d.irq.take();
    // The second first; `written` is clamped to the chain's writable bytes.
    assert_eq!(d.t.complete(ep, 0, b, 1000), Ok(true));
    assert_eq!(d.used(), vec![(u32::from(b), 64)]);
    assert_eq!(d.irq.take().len(), 1, "INTx asserted");
    assert_eq!(d.t.complete(ep, 0, a, 7), Ok(true));
    assert_eq!(d.used(), vec![(u32::from(a), 7)]);
    assert_eq!(d.t.in_flight(), 0);
    assert_eq!(d.t.stats().chains, 2);
    // Twice, an unknown head, an unknown queue: refused, nothing written.
    assert_eq!(
        d.t.complete(ep, 0, a, 7),
        Err(CompleteError::NotInFlight { queue: 0, head: a })
    );
    assert_eq!(
        d.t.complete(ep, 0, 5, 0),
        Err(CompleteError::NotInFlight { queue: 0, head: 5 })
    );
    assert_eq!(
        d.t.complete(ep, 3, a, 0),
        Err(CompleteError::NoSuchQueue { queue: 3 })
    );
    assert_eq!(d.used(), vec![]);
    assert_eq!(d.status() & STATUS_NEEDS_RESET, 0);
}

#[test]
fn deferred_chains_in_flight_at_reset_are_dropped() {
    let mut d = deferred_drv();
    d.start(F_VERSION_1, 8);
    let a = d.chain(&[(0x50000, 32, true)]);
    d.publish(a);
    d.kick();
    let old = d.t.take_deferred();
    assert_eq!(old.len(), 1);
    // Reset and set up again; the same head is made available in the new epoch.
    d.w(0x14, 1, 0);
    assert_eq!(d.t.in_flight(), 0);
    d.mem.write(USED, &[0u8; 6 + 8 * 8]).unwrap();
    d.mem.write(AVAIL, &[0u8; 6 + 2 * 8]).unwrap();
    d.next_desc = 0;
    d.avail_idx = 0;
    d.used_seen = 0;
    d.start(F_VERSION_1, 8);
    let a2 = d.chain(&[(0x50000, 32, true)]);
    assert_eq!(a2, a);
    d.publish(a2);
    d.kick();
    let new = d.t.take_deferred();
    assert_eq!(new.len(), 1);
    assert_ne!(new[0].epoch, old[0].epoch);
    // The old completion is dropped, never written into the new queue.
    assert_eq!(d.t.complete(old[0].epoch, 0, a, 32), Ok(false));
    assert_eq!(d.used(), vec![]);
    assert_eq!(d.t.complete(new[0].epoch, 0, a, 32), Ok(true));
    assert_eq!(d.used(), vec![(u32::from(a), 32)]);
}

#[test]
fn a_head_made_available_twice_while_in_flight_needs_reset() {
    let mut d = deferred_drv();
    d.start(F_VERSION_1, 8);
    let a = d.chain(&[(0x50000, 32, true)]);
    d.publish(a);
    d.kick();
    d.publish(a);
    d.kick();
    assert_ne!(d.status() & STATUS_NEEDS_RESET, 0);
    assert_eq!(d.t.last_error(), Some(QueueError::HeadInFlight { head: a }));
    let chains = d.t.take_deferred();
    assert_eq!(chains.len(), 1);
    // The device needs a reset: the completion is dropped.
    assert_eq!(d.t.complete(chains[0].epoch, 0, a, 1), Ok(false));
    assert_eq!(d.used(), vec![]);
}

#[test]
fn deferred_completions_honour_the_event_index() {
    let mut d = deferred_drv();
    d.start(F_VERSION_1 | F_RING_EVENT_IDX, 8);
    // used_event = 1: no interrupt for the first completion (used idx 0 -> 1), one for the
    // second (1 -> 2).
    d.mem.write_le(AVAIL + 4 + 2 * 8, 2, 1).unwrap();
    let a = d.chain(&[(0x50000, 8, true)]);
    d.publish(a);
    let b = d.chain(&[(0x60000, 8, true)]);
    d.publish(b);
    d.kick();
    let c = d.t.take_deferred();
    d.irq.take();
    assert_eq!(d.t.complete(c[1].epoch, 0, b, 8), Ok(true));
    assert_eq!(d.irq.take(), vec![], "suppressed by used_event");
    assert_eq!(d.t.complete(c[0].epoch, 0, a, 8), Ok(true));
    assert_eq!(d.irq.take().len(), 1);
    assert_eq!(d.used(), vec![(u32::from(b), 8), (u32::from(a), 8)]);
}

#[test]
fn deferred_completions_with_msix() {
    let mut d = deferred_drv();
    // MSI-X enable (message control bit 15) at the capability 0x98 + 2; queue 0 on vector 1.
    d.cfg_w(0x98 + 2, 2, 1 << 15);
    d.start(F_VERSION_1, 8);
    d.w(MSIX_TABLE_OFFSET + 16, 4, 0xfee0_0000);
    d.w(MSIX_TABLE_OFFSET + 16 + 8, 4, 0x41);
    d.w(MSIX_TABLE_OFFSET + 16 + 12, 4, 0);
    d.w(0x16, 2, 0);
    d.w(0x1a, 2, 1);
    let a = d.chain(&[(0x50000, 8, true)]);
    d.publish(a);
    d.kick();
    let c = d.t.take_deferred();
    d.irq.take();
    assert_eq!(d.t.complete(c[0].epoch, 0, a, 4), Ok(true));
    assert_eq!(
        d.irq.take(),
        vec![Interrupt::Msi {
            addr: 0xfee0_0000,
            data: 0x41
        }]
    );
}

#[test]
fn a_deferred_device_config_change() {
    let mut d = deferred_drv();
    // Before DRIVER_OK: the generation moves, no interrupt.
    let g0 = d.r(0x15, 1);
    assert!(d.t.config_changed(Some(&[9, 8, 7, 6])));
    assert_eq!(d.r(0x15, 1), (g0 + 1) & 0xff);
    assert_eq!(d.irq.take(), vec![]);
    d.start(F_VERSION_1, 8);
    assert_eq!(d.r(DEVICE_CFG_OFFSET, 4), 0x0607_0809);
    assert!(d.t.config_changed(Some(&[1])));
    assert_eq!(d.r(DEVICE_CFG_OFFSET, 4), 1);
    assert_eq!(d.r(ISR_OFFSET, 1), 2, "configuration change");
    // A native device takes no image.
    let mut r = Drv::new(Box::new(VirtioRng::new()));
    assert!(!r.t.config_changed(Some(&[1])));
    assert!(r.t.config_changed(None));
    let _ = r.r(0x14, 1);
}
