//! The dispatcher on its own: registration rules, lookup, unclaimed and malformed requests.

use acrn_hsm::client::{
    AddressSpace, Bdf, BusError, DeviceId, Dispatcher, FaultReason, Kind, Request, Target,
};
use acrn_hsm::devices::{FnDevice, PciFunction, RegisterFile};

fn dev(name: &str) -> Box<FnDevice> {
    let n = name.to_string();
    Box::new(FnDevice::new(n, |off, _| off, |_, _, _| {}))
}

fn req(kind: Kind, is_read: bool, address: u64, size: u64) -> Request {
    Request {
        vcpu: 0,
        kind,
        is_read,
        direction: u32::from(!is_read),
        address,
        size,
        value: 0,
        bdf: Bdf::default(),
        reg: 0,
        raw_bdf: (0, 0, 0),
    }
}

#[test]
fn overlapping_and_empty_ranges_are_refused() {
    let mut d = Dispatcher::new();
    let a = d.add_pio(0x3f8, 8, dev("uart")).expect("first");
    assert_eq!(a, DeviceId(0));
    // Inside, straddling either end, enclosing.
    for (base, len) in [
        (0x3f8, 1),
        (0x3f0, 9),
        (0x3ff, 4),
        (0x3f0, 0x20),
        (0x3fc, 2),
    ] {
        match d.add_pio(base, len, dev("x")) {
            Err(BusError::Overlap {
                existing,
                existing_base,
                existing_len,
                ..
            }) => {
                assert_eq!(
                    (existing.as_str(), existing_base, existing_len),
                    ("uart", 0x3f8, 8)
                );
            }
            other => panic!("{base:#x}+{len}: {other:?}"),
        }
    }
    // Adjacent is fine.
    d.add_pio(0x3f0, 8, dev("below")).expect("below");
    d.add_pio(0x400, 8, dev("above")).expect("above");
    let e = d.add_pio(0x500, 0, dev("empty")).expect_err("empty");
    assert!(matches!(e, BusError::Empty { .. }));
    assert!(e.to_string().contains("empty"), "{e}");
    assert!(matches!(
        d.add_pio(0xfffc, 8, dev("past")),
        Err(BusError::OutOfSpace { .. })
    ));
    d.add_pio(0xfff8, 8, dev("last")).expect("up to 0xffff");
    assert!(matches!(
        d.add_mmio(u64::MAX - 3, 8, dev("past")),
        Err(BusError::OutOfSpace { .. })
    ));
    d.add_mmio(u64::MAX - 7, 8, dev("top")).expect("top");
    // PIO and MMIO are separate spaces.
    d.add_mmio(0x3f8, 8, dev("mmio")).expect("mmio");
    let msg = d
        .add_mmio(0x3f0, 0x10, dev("x"))
        .expect_err("overlap")
        .to_string();
    assert_eq!(
        msg,
        "MMIO range 0x3f0+0x10 for \"x\" overlaps \"mmio\" at 0x3f8+0x8"
    );
    d.add_pci(Bdf::new(0, 3, 0), Box::new(PciFunction::new(1, 2)))
        .expect("pci");
    assert!(matches!(
        d.add_pci(Bdf::new(0, 3, 0), Box::new(PciFunction::new(1, 2))),
        Err(BusError::PciTaken { .. })
    ));
}

#[test]
fn lookup_requires_the_access_fully_inside() {
    let mut d = Dispatcher::new();
    let id = d.add_mmio(0x1000, 0x10, dev("r")).expect("add");
    assert_eq!(d.lookup(AddressSpace::Mmio, 0x1000, 8), Some((id, 0)));
    assert_eq!(d.lookup(AddressSpace::Mmio, 0x1008, 8), Some((id, 8)));
    assert_eq!(d.lookup(AddressSpace::Mmio, 0x100c, 8), None);
    assert_eq!(d.lookup(AddressSpace::Mmio, 0xfff, 1), None);
    assert_eq!(d.lookup(AddressSpace::Mmio, 0x1010, 1), None);
    assert_eq!(d.lookup(AddressSpace::Pio, 0x1000, 1), None);
    // Many ranges: each address finds its own.
    let mut d = Dispatcher::new();
    let ids: Vec<_> = (0..1000u64)
        .map(|i| d.add_mmio(i * 0x100, 0x80, dev("r")).expect("add"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let base = i as u64 * 0x100;
        assert_eq!(
            d.lookup(AddressSpace::Mmio, base + 0x7c, 4),
            Some((*id, 0x7c))
        );
        assert_eq!(d.lookup(AddressSpace::Mmio, base + 0x80, 1), None);
    }
}

#[test]
fn unclaimed_and_malformed_requests() {
    let mut d = Dispatcher::new();
    d.add_pio(0x80, 4, Box::new(RegisterFile::new(4)))
        .expect("add");
    d.add_mmio(0x1000, 0x10, Box::new(RegisterFile::new(0x10)))
        .expect("add");
    let mut faults = 0;
    let mut run = |r: Request| d.dispatch(&r);
    // Unclaimed: all ones by size, no fault.
    for (size, ones) in [(1, 0xff), (2, 0xffff), (4, 0xffff_ffff)] {
        let o = run(req(Kind::Pio, true, 0x60, size));
        assert_eq!((o.value, o.target), (ones, Target::Unclaimed));
    }
    let o = run(req(Kind::Mmio, true, 0x2000, 8));
    assert_eq!((o.value, o.target), (u64::MAX, Target::Unclaimed));
    // Partially inside: unclaimed.
    let o = run(req(Kind::Mmio, true, 0x100c, 8));
    assert_eq!(o.target, Target::Unclaimed);
    // Served.
    let mut w = req(Kind::Pio, false, 0x80, 2);
    w.value = 0xbeef;
    assert!(matches!(run(w).target, Target::Device(_)));
    assert_eq!(run(req(Kind::Pio, true, 0x80, 2)).value, 0xbeef);
    // Malformed.
    let cases = [
        (
            req(Kind::Unknown(9), true, 0x80, 1),
            FaultReason::UnknownType(9),
        ),
        (req(Kind::Pio, true, 0x80, 8), FaultReason::InvalidSize(8)),
        (
            req(Kind::Mmio, true, 0x1000, 3),
            FaultReason::InvalidSize(3),
        ),
        (
            req(Kind::Mmio, true, 0x1000, 0),
            FaultReason::InvalidSize(0),
        ),
        (
            req(Kind::Mmio, true, u64::MAX, 2),
            FaultReason::AddressOverflow,
        ),
        (
            req(Kind::Pio, true, 0xffff, 2),
            FaultReason::AddressOverflow,
        ),
        (
            req(Kind::Pio, true, u64::MAX, 4),
            FaultReason::AddressOverflow,
        ),
        (req(Kind::PciCfg, true, 0, 8), FaultReason::InvalidSize(8)),
    ];
    for (r, reason) in cases {
        let o = run(r);
        assert_eq!(o.target, Target::Fault(reason), "{r:?}");
        let expect = if matches!(r.kind, Kind::Unknown(_)) {
            u64::MAX
        } else {
            acrn_hsm::client::ones(r.size)
        };
        assert_eq!(o.value, expect);
        faults += 1;
    }
    let mut bad = req(Kind::Pio, false, 0x80, 1);
    bad.direction = 5;
    assert_eq!(
        run(bad).target,
        Target::Fault(FaultReason::UnknownDirection(5))
    );
    let mut p = req(Kind::PciCfg, true, 0, 4);
    p.raw_bdf = (0, 32, 0);
    assert_eq!(run(p).target, Target::Fault(FaultReason::InvalidPciAddress));
    let mut p = req(Kind::PciCfg, true, 0, 4);
    p.reg = 0xffe;
    assert_eq!(run(p).target, Target::Fault(FaultReason::InvalidPciAddress));
    // An absent function: unclaimed, all ones.
    let p = req(Kind::PciCfg, true, 0, 2);
    let o = run(p);
    assert_eq!((o.value, o.target), (0xffff, Target::Unclaimed));
    assert_eq!(faults, 8);
}

#[test]
fn fault_hook_sees_every_fault_and_counters_count_devices() {
    let mut d = Dispatcher::new();
    d.add_pio(0x80, 1, dev("p")).expect("add");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    d.set_fault_hook(move |f| s2.lock().expect("lock").push(f.reason));
    d.dispatch(&req(Kind::Pio, true, 0x80, 8));
    d.dispatch(&req(Kind::Pio, true, 0x80, 1));
    d.dispatch(&req(Kind::Pio, false, 0x80, 1));
    d.dispatch(&req(Kind::Pio, false, 0x81, 1));
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![FaultReason::InvalidSize(8)]
    );
    let c = d.counters();
    assert_eq!((c[0].name(), c[0].reads(), c[0].writes()), ("p", 1, 1));
}

#[test]
fn pio_on_the_pci_configuration_ports_is_refused() {
    let mut d = Dispatcher::new();
    for (base, len) in [
        (0xcf8u16, 8u32),
        (0xcf8, 1),
        (0xcfc, 4),
        (0xcf0, 9),
        (0xcff, 1),
        (0xcfb, 2),
    ] {
        let r = d.add_pio(base, len, Box::new(RegisterFile::new(len as usize)));
        assert!(
            matches!(r, Err(BusError::Reserved { .. })),
            "{base:#x}+{len}: {:?}",
            r.map(|_| ())
        );
    }
    // Beside them, and 0xCF9 (reset control, the device model's), are fine.
    d.add_pio(0xcf0, 8, Box::new(RegisterFile::new(8)))
        .expect("below");
    d.add_pio(0xcf9, 3, Box::new(RegisterFile::new(3)))
        .expect("reset control");
    d.add_pio(0xd00, 4, Box::new(RegisterFile::new(4)))
        .expect("above");
}

#[test]
fn removed_devices_are_unclaimed_and_changes_from_a_handle_apply_in_order() {
    let mut d = Dispatcher::new();
    let a = d.add_mmio(0x1000, 0x100, dev("a")).expect("a");
    let read = |d: &mut Dispatcher, addr| d.dispatch(&req(Kind::Mmio, true, addr, 4));
    assert_eq!(read(&mut d, 0x1010).target, Target::Device(a));
    d.remove(a).expect("remove");
    assert_eq!(d.remove(a), Err(BusError::NoSuchDevice(a)));
    assert_eq!(
        d.remove(DeviceId(99)),
        Err(BusError::NoSuchDevice(DeviceId(99)))
    );
    let o = read(&mut d, 0x1010);
    assert_eq!((o.target, o.value), (Target::Unclaimed, 0xffff_ffff));
    assert_eq!(d.len(), 0);
    // A handle's changes are checked at once (against queued ones too) and applied in order.
    let h = d.handle();
    let b = h.add_mmio(0x1000, 0x100, dev("b")).expect("b");
    assert!(matches!(
        h.add_mmio(0x10f0, 0x20, dev("c")),
        Err(BusError::Overlap { .. })
    ));
    h.remove(b).expect("queued removal");
    let c = h
        .add_mmio(0x1000, 0x200, dev("c"))
        .expect("c over b's range");
    assert!(h.pending());
    assert_eq!(
        read(&mut d, 0x1010).target,
        Target::Unclaimed,
        "not applied yet"
    );
    assert!(d.apply_changes());
    assert!(!h.pending() && !d.apply_changes());
    assert_eq!(read(&mut d, 0x1110).target, Target::Device(c));
    assert_eq!(
        d.ranges().iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![c],
        "ids are not reused: b came and went"
    );
    assert!((a.0 < b.0) && (b.0 < c.0));
    let counters = d.counters();
    assert_eq!(counters[c.0].name(), "c");
    assert_eq!(counters[c.0].reads(), 1);
    // A PCI function goes with its configuration space.
    let f = d
        .add_pci(Bdf::new(0, 2, 0), Box::new(PciFunction::new(1, 2)))
        .expect("f");
    d.remove(f).expect("remove f");
    let mut cfg = req(Kind::PciCfg, true, 0, 4);
    cfg.bdf = Bdf::new(0, 2, 0);
    cfg.raw_bdf = (0, 2, 0);
    assert_eq!(d.dispatch(&cfg).target, Target::Unclaimed);
}

/// The lookup remembers the last range it found per space: a removal, a new range and the
/// other space never see a stale answer.
#[test]
fn lookup_cache_follows_every_change() {
    let mut d = Dispatcher::new();
    let a = d.add_pio(0x60, 8, dev("a")).expect("add");
    let m = d.add_mmio(0x60, 8, dev("m")).expect("add");
    assert_eq!(d.lookup(AddressSpace::Pio, 0x61, 1), Some((a, 1)));
    assert_eq!(d.lookup(AddressSpace::Mmio, 0x61, 1), Some((m, 1)));
    // A cached range still checks the access's end and its start.
    assert_eq!(d.lookup(AddressSpace::Pio, 0x67, 2), None);
    assert_eq!(d.lookup(AddressSpace::Pio, 0x5f, 1), None);
    assert_eq!(d.lookup(AddressSpace::Pio, 0x68, 1), None);
    d.remove(a).expect("remove");
    assert_eq!(d.lookup(AddressSpace::Pio, 0x61, 1), None, "removed");
    assert_eq!(d.lookup(AddressSpace::Mmio, 0x61, 1), Some((m, 1)));
    let b = d.add_pio(0x60, 2, dev("b")).expect("add again");
    assert_eq!(d.lookup(AddressSpace::Pio, 0x61, 1), Some((b, 1)));
    assert_eq!(
        d.lookup(AddressSpace::Pio, 0x62, 1),
        None,
        "the new range is shorter"
    );
}
