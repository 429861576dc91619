//! Live PCI BARs: a guest sizes and programs a BAR of a function, enables memory decoding, and
//! reaches the BAR's handler; after it moves the BAR the old range is unclaimed (all ones) and
//! the new one served; with decoding disabled nothing is. (BARs sit outside the MMCONFIG
//! window at 0xE000_0000, which the hypervisor's vPCI takes.)

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use acrn_hsm::client::{AddressSpace, BarHandler, Bdf, Kind, Request};
use acrn_hsm::devices::{Bar, PciFunction};

/// A BAR handler: reads return a signature plus the offset.
struct Regs;
impl IoDevice for Regs {
    fn read(&mut self, offset: u64, _size: u8) -> u64 {
        0x5a00_0000 | offset
    }
    fn write(&mut self, _offset: u64, _size: u8, _value: u64) {}
}

fn cfg(reg: u16, size: u8, access: Access) -> Op {
    Op::pci(0, 3, 0, reg, size, access)
}

#[test]
fn a_programmed_bar_reaches_its_handler_and_follows_moves_and_decoding() {
    let (_emu, hsm, vm) = vm_with(1, 0);
    let mut d = Dispatcher::new();
    let f = PciFunction::new(0x8086, 0x1234)
        .with_bar(
            0,
            Bar::Mem32 {
                size: 0x1000,
                prefetchable: false,
            },
        )
        .unwrap()
        .with_bar(1, Bar::Io { size: 0x10 })
        .unwrap();
    let (id, _) = d
        .add_pci_with_bars(
            Bdf::new(0, 3, 0),
            Box::new(f),
            vec![
                (0, BarHandler::Native(Box::new(Regs))),
                (1, BarHandler::Native(Box::new(Regs))),
            ],
        )
        .unwrap();
    assert_eq!(d.bar_route(id, 0), None, "nothing is decoded at power-on");
    let mut client = IoreqClient::new(vm.clone(), d, ClientConfig::default()).unwrap();
    let handle = client.handle();
    let t = std::thread::spawn(move || {
        let _ = client.run();
        client
    });
    vm.start().unwrap();
    let ops = vec![
        // Size BAR0 as firmware does (decoding off), then program it.
        cfg(0x10, 4, Access::Write(0xffff_ffff)),
        cfg(0x10, 4, Access::expect(0xffff_f000)),
        cfg(0x10, 4, Access::Write(0xc000_0000)),
        // Not decoded yet: unclaimed, all ones.
        Op::mmio(0xc000_0010, 4, Access::expect(0xffff_ffff)),
        // Memory decoding on: served by the BAR's handler, offsets relative to the BAR.
        cfg(0x04, 2, Access::Write(0x2)),
        Op::mmio(0xc000_0010, 4, Access::expect(0x5a00_0010)),
        // Move it: the old range is unclaimed, the new one served.
        cfg(0x10, 4, Access::Write(0xc010_0000)),
        Op::mmio(0xc000_0010, 4, Access::expect(0xffff_ffff)),
        Op::mmio(0xc010_0ff0, 4, Access::expect(0x5a00_0ff0)),
        // The I/O BAR needs the I/O bit.
        cfg(0x14, 4, Access::Write(0xc000)),
        Op::pio(0xc004, 4, Access::expect(0xffff_ffff)),
        cfg(0x04, 2, Access::Write(0x3)),
        Op::pio(0xc004, 4, Access::expect(0x5a00_0004)),
        // Decoding off: nothing is served.
        cfg(0x04, 2, Access::Write(0x0)),
        Op::mmio(0xc010_0ff0, 4, Access::expect(0xffff_ffff)),
        Op::pio(0xc004, 4, Access::expect(0xffff_ffff)),
    ];
    let r = hsm
        .guest(&vm)
        .unwrap()
        .run(&Workload { vcpus: vec![ops] })
        .unwrap();
    handle.stop();
    let client = t.join().unwrap();
    assert!(r.is_clean(), "{r:?}");
    drop(client);
    vm.pause().unwrap();
}

#[test]
fn a_window_over_another_device_is_not_routed() {
    let mut d = Dispatcher::new();
    d.add_mmio(0xc000_0000, 0x1000, Box::new(Regs)).unwrap();
    let f = PciFunction::new(0x8086, 0x1234)
        .with_bar(
            0,
            Bar::Mem32 {
                size: 0x1000,
                prefetchable: false,
            },
        )
        .unwrap();
    let (id, _) = d
        .add_pci_with_bars(
            Bdf::new(0, 4, 0),
            Box::new(f),
            vec![(0, BarHandler::Native(Box::new(Regs)))],
        )
        .unwrap();
    let write = |d: &mut Dispatcher, reg: u32, size: u64, value: u64| {
        let req = Request {
            vcpu: 0,
            kind: Kind::PciCfg,
            is_read: false,
            direction: 1,
            address: 0,
            size,
            value,
            bdf: Bdf::new(0, 4, 0),
            reg,
            raw_bdf: (0, 4, 0),
        };
        d.dispatch(&req);
    };
    write(&mut d, 0x10, 4, 0xc000_0000);
    write(&mut d, 0x04, 2, 0x2);
    assert_eq!(d.bar_route(id, 0), None);
    write(&mut d, 0x10, 4, 0xc000_1000);
    assert_eq!(
        d.bar_route(id, 0),
        Some((AddressSpace::Mmio, 0xc000_1000, 0x1000))
    );
    d.reset_devices();
    assert_eq!(d.bar_route(id, 0), None, "reset BARs decode nothing");
}
