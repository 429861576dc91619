//! Property tests of the split virtqueue against a hostile driver: random descriptor tables
//! (addresses in and out of RAM, lengths, every flag combination including INDIRECT and loops
//! through `next`), random indirect tables, random available indices and ring entries, random
//! queue sizes and start indices, over a small guest memory with a hole. Every case must end
//! (no hang), never panic, hand the device only buffers inside RAM, keep each chain within the
//! bounds of §2.7.5.3 (at most `size` descriptors in the descriptor table, at most the table's
//! entries in an indirect table), and answer garbage with an error — which the transport turns
//! into DEVICE_NEEDS_RESET with a configuration interrupt (second property).
//!
//! `ACRN_FUZZ_SEED=N` / `ACRN_FUZZ_SECS=S` as in the other property tests.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use acrn_hsm::devices::virtio::queue::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, Queue};
use acrn_hsm::devices::virtio::{
    F_INDIRECT_DESC, F_RING_EVENT_IDX, F_VERSION_1, Interrupt, NOTIFY_OFFSET, RecordedInterrupts,
    STATUS_NEEDS_RESET, VirtioPci, VirtioRng,
};
use acrn_hsm::{GuestMemory, IoDevice, PAGE_SIZE, PciDevice, UserPages};
use prop_harness::{Budget, Rng};

/// RAM: [0, 0x8000) and [0x10000, 0x14000); a hole between and nothing above.
const REGIONS: [(u64, u64); 2] = [(0, 0x8000), (0x1_0000, 0x4000)];

fn memory() -> (Vec<UserPages>, Arc<GuestMemory>) {
    let m = GuestMemory::new();
    let mut keep = Vec::new();
    for (gpa, len) in REGIONS {
        let p = UserPages::new(len as usize).unwrap();
        m.insert(gpa, p.pin()).unwrap();
        keep.push(p);
    }
    assert_eq!(PAGE_SIZE, 4096);
    (keep, Arc::new(m))
}

/// The oracle: inside one region (the two are not adjacent).
fn in_ram(addr: u64, len: u64) -> bool {
    REGIONS.iter().any(|&(g, l)| {
        if len == 0 {
            addr >= g && addr < g + l
        } else {
            addr >= g && addr.checked_add(len).is_some_and(|e| e <= g + l)
        }
    })
}

fn addr(rng: &mut Rng) -> u64 {
    match rng.below(20) {
        0..=13 => {
            let (g, l) = REGIONS[rng.below(2) as usize];
            g + rng.below(l)
        }
        14..=16 => {
            // Near an edge of a region (straddling it or just outside).
            let (g, l) = REGIONS[rng.below(2) as usize];
            let edge = if rng.below(2) == 0 { g } else { g + l };
            edge.wrapping_add(rng.below(64)).wrapping_sub(32)
        }
        17 => u64::MAX - rng.below(64),
        _ => rng.next(),
    }
}

fn aligned(rng: &mut Rng, align: u64) -> u64 {
    if rng.below(8) == 0 {
        addr(rng)
    } else {
        addr(rng) & !(align - 1)
    }
}

fn len(rng: &mut Rng) -> u32 {
    match rng.below(10) {
        0 => 0,
        1 => rng.next() as u32,
        2 => 16 * (1 + rng.below(8) as u32),
        _ => rng.below(0x800) as u32,
    }
}

fn flags(rng: &mut Rng) -> u16 {
    match rng.below(10) {
        0 => rng.next() as u16,
        1 => DESC_F_INDIRECT,
        2 => DESC_F_INDIRECT | DESC_F_NEXT,
        _ => (rng.below(4) as u16) & (DESC_F_NEXT | DESC_F_WRITE),
    }
}

/// A descriptor: noise, or (`sane`) a small buffer inside RAM with NEXT/WRITE flags only.
fn write_desc(mem: &GuestMemory, at: u64, rng: &mut Rng, entries: u32, sane: bool) {
    let mut d = [0u8; 16];
    if sane {
        let (g, l) = REGIONS[rng.below(2) as usize];
        d[0..8].copy_from_slice(&(g + rng.below(l - 0x800)).to_le_bytes());
        d[8..12].copy_from_slice(&(rng.below(0x800) as u32).to_le_bytes());
        let f = if rng.below(3) == 0 { DESC_F_NEXT } else { 0 }
            | if rng.below(3) == 0 { DESC_F_WRITE } else { 0 };
        d[12..14].copy_from_slice(&f.to_le_bytes());
    } else {
        d[0..8].copy_from_slice(&addr(rng).to_le_bytes());
        d[8..12].copy_from_slice(&len(rng).to_le_bytes());
        d[12..14].copy_from_slice(&flags(rng).to_le_bytes());
    }
    let next = if rng.below(10) == 0 {
        rng.next() as u16
    } else {
        rng.below(u64::from(entries) + 1) as u16
    };
    d[14..16].copy_from_slice(&next.to_le_bytes());
    let _ = mem.write(at, &d);
}

/// Fills RAM with noise, then writes a random but plausible set of rings for `q`.
fn random_rings(mem: &GuestMemory, rng: &mut Rng, q: &mut Queue) {
    let mut noise = vec![0u8; 0x8000];
    for (g, l) in REGIONS {
        rng.fill(&mut noise[..l as usize]);
        mem.write(g, &noise[..l as usize]).unwrap();
    }
    let size = u64::from(q.size.max(1));
    let sane = rng.below(2) == 0;
    q.desc = aligned(rng, 16);
    q.avail = aligned(rng, 2);
    q.used = aligned(rng, 4);
    for i in 0..size {
        write_desc(
            mem,
            q.desc.wrapping_add(16 * i),
            rng,
            u32::from(q.size.max(1)),
            sane,
        );
    }
    // A few indirect tables where some descriptors point.
    for _ in 0..rng.below(4) {
        let entries = 1 + rng.below(16);
        let table = aligned(rng, 16);
        for k in 0..entries {
            write_desc(mem, table.wrapping_add(16 * k), rng, entries as u32, sane);
        }
        let i = rng.below(size);
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&table.to_le_bytes());
        let l = if rng.below(6) == 0 {
            rng.below(300) as u32
        } else {
            16 * entries as u32
        };
        d[8..12].copy_from_slice(&l.to_le_bytes());
        let f = if rng.below(6) == 0 {
            flags(rng) | DESC_F_INDIRECT
        } else {
            DESC_F_INDIRECT
        };
        d[12..14].copy_from_slice(&f.to_le_bytes());
        let _ = mem.write(q.desc.wrapping_add(16 * i), &d);
    }
    q.next_avail = rng.next() as u16;
    q.next_used = q.next_avail.wrapping_sub(rng.below(3) as u16);
    let idx = match rng.below(8) {
        0 => rng.next() as u16,
        _ => q.next_avail.wrapping_add(rng.below(size + 2) as u16),
    };
    let _ = mem.write_le(q.avail.wrapping_add(2), 2, u64::from(idx));
    for s in 0..size {
        let head = if rng.below(8) == 0 {
            rng.next() as u16
        } else {
            rng.below(size) as u16
        };
        let _ = mem.write_le(q.avail.wrapping_add(4 + 2 * s), 2, u64::from(head));
    }
}

#[test]
fn random_rings_never_escape_ram_and_always_end() {
    let seed = prop_harness::seed(0x0f1a_7e0e);
    let mut rng = Rng(seed);
    let (_keep, mem) = memory();
    let mut budget = Budget::new(3000, 16);
    let (mut chains, mut errors, mut empty) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    while budget.more() {
        let case = budget.done();
        let max = 256u16;
        let size = if rng.below(10) == 0 {
            rng.below(300) as u16
        } else {
            1 << rng.below(9)
        };
        let mut q = Queue::new(max);
        q.size = size;
        q.indirect = rng.below(2) == 0;
        q.event_idx = rng.below(2) == 0;
        random_rings(&mem, &mut rng, &mut q);
        // Validation decides in the transport; here the queue is also driven when it failed
        // (with a valid size), to check the ring code on its own against areas outside RAM.
        q.ready = q.validate(&mem).is_ok() || rng.below(4) != 0;
        if !q.ready {
            continue;
        }
        let mut pops = 0u32;
        loop {
            let t = Instant::now();
            let r = q.pop(&mem);
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "seed {seed} case {case}: one pop took {:?}",
                t.elapsed()
            );
            match r {
                Ok(Some(c)) => {
                    chains += 1;
                    pops += 1;
                    assert!(
                        c.head < size,
                        "seed {seed} case {case}: head {} of {size}",
                        c.head
                    );
                    assert!(
                        c.bufs.len() <= usize::from(size) + 32768,
                        "seed {seed} case {case}: {} buffers",
                        c.bufs.len()
                    );
                    let mut seen_w = false;
                    for b in &c.bufs {
                        assert!(
                            in_ram(b.addr, u64::from(b.len)),
                            "seed {seed} case {case}: buffer {b:?} outside RAM"
                        );
                        assert!(!seen_w || b.writable, "readable after writable");
                        seen_w |= b.writable;
                    }
                    // The device's accessors stay inside the chain and RAM.
                    let mut scratch = vec![0u8; rng.below(0x3000) as usize];
                    let off = rng.below(0x1000);
                    let n = c.read_at(&mem, off, &mut scratch).unwrap();
                    assert!(n as u64 <= c.readable_len().saturating_sub(off));
                    let n = c.write_at(&mem, off, &scratch).unwrap();
                    assert!(n as u64 <= c.writable_len().saturating_sub(off));
                    if q.add_used(&mem, c.head, rng.next() as u32).is_err() {
                        errors += 1;
                        break;
                    }
                    let _ = q.needs_interrupt(&mem);
                    let _ = q.set_avail_event(&mem);
                }
                Ok(None) => {
                    empty += 1;
                    break;
                }
                Err(_) => {
                    errors += 1;
                    break;
                }
            }
            assert!(
                pops <= u32::from(size),
                "seed {seed} case {case}: more chains than the ring holds"
            );
        }
    }
    println!(
        "{} cases in {:?}: {chains} chains, {errors} errors, {empty} empty rings (seed {seed})",
        budget.done(),
        t0.elapsed()
    );
    assert!(
        chains > 0 && errors > 0,
        "the generator covers both outcomes"
    );
}

/// Through the transport: a driver that sets a queue up properly, then publishes garbage.
/// Either the device serves it, or it goes to DEVICE_NEEDS_RESET with ISR bit 1 and an
/// interrupt, and then leaves the queue alone until reset.
#[test]
fn garbage_on_a_live_queue_means_needs_reset() {
    let seed = prop_harness::seed(0x0bad_1de5);
    let mut rng = Rng(seed);
    let (_keep, mem) = memory();
    let mut budget = Budget::new(400, 16);
    let (mut resets, mut fine) = (0u64, 0u64);
    while budget.more() {
        let case = budget.done();
        let irq = Arc::new(RecordedInterrupts::default());
        let t = VirtioPci::new(Box::new(VirtioRng::new()), mem.clone(), irq.clone());
        let mut cfg = t.clone();
        let mut bar = t.bar();
        cfg.cfg_write(0x3c, 1, 11);
        // Memory decoding and a BAR, as firmware would.
        cfg.cfg_write(0x20, 4, 0xfe00_0000);
        cfg.cfg_write(4, 2, 0x2);
        bar.write(0x14, 1, 1 | 2);
        let feats = F_VERSION_1
            | if rng.below(2) == 0 {
                F_INDIRECT_DESC
            } else {
                0
            }
            | if rng.below(2) == 0 {
                F_RING_EVENT_IDX
            } else {
                0
            };
        bar.write(0x08, 4, 0);
        bar.write(0x0c, 4, feats & 0xffff_ffff);
        bar.write(0x08, 4, 1);
        bar.write(0x0c, 4, feats >> 32);
        bar.write(0x14, 1, 1 | 2 | 8);
        assert_eq!(bar.read(0x14, 1) & 8, 8, "FEATURES_OK");
        // A valid layout in region A; the contents are random.
        let size = 1u16 << rng.below(7);
        let mut q = Queue::new(64);
        q.size = size;
        q.indirect = feats & F_INDIRECT_DESC != 0;
        q.event_idx = feats & F_RING_EVENT_IDX != 0;
        random_rings(&mem, &mut rng, &mut q);
        let (desc, avail, used) = (0x1000u64, 0x2000u64, 0x3000u64);
        // Move the random rings to the valid places.
        let mut b = vec![0u8; 16 * usize::from(size)];
        let _ = mem.read(q.desc, &mut b);
        mem.write(desc, &b).unwrap();
        let mut b = vec![0u8; 6 + 2 * usize::from(size)];
        let _ = mem.read(q.avail, &mut b);
        // The driver's view starts at 0.
        b[2..4].copy_from_slice(&(rng.below(u64::from(size) + 3) as u16).to_le_bytes());
        mem.write(avail, &b).unwrap();
        mem.write(used, &[0u8; 6]).unwrap();
        bar.write(0x16, 2, 0);
        bar.write(0x18, 2, u64::from(size));
        bar.write(0x20, 8, desc);
        bar.write(0x28, 8, avail);
        bar.write(0x30, 8, used);
        bar.write(0x1c, 2, 1);
        bar.write(0x14, 1, 1 | 2 | 8 | 4);
        bar.write(NOTIFY_OFFSET, 2, 0);
        let status = bar.read(0x14, 1) as u8;
        if status & STATUS_NEEDS_RESET != 0 {
            resets += 1;
            assert!(t.last_error().is_some(), "seed {seed} case {case}");
            assert_eq!(
                irq.take(),
                vec![Interrupt::Intx {
                    gsi: 11,
                    asserted: true
                }],
                "seed {seed} case {case}: the configuration interrupt"
            );
            // The ISR says configuration change; reading it clears and lowers the line.
            assert_eq!(bar.read(0x1000, 1) & 2, 2);
            assert_eq!(bar.read(0x1000, 1), 0);
            let used_idx = mem.read_le(used + 2, 2).unwrap();
            bar.write(NOTIFY_OFFSET, 2, 0);
            assert_eq!(
                mem.read_le(used + 2, 2).unwrap(),
                used_idx,
                "queue left alone"
            );
            bar.write(0x14, 1, 0);
            assert_eq!(bar.read(0x14, 1), 0, "reset clears NEEDS_RESET");
            assert_eq!(t.last_error(), None);
        } else {
            fine += 1;
        }
    }
    println!("{resets} needs-reset, {fine} served (seed {seed})");
    assert!(resets > 0 && fine > 0);
}
