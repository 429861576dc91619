//! MSI-X end to end: a guest walks a function's capability list, sizes and programs its BAR
//! through 0xCF8/0xCFC, enables memory decoding and MSI-X, programs a table entry through the
//! BAR, and a vCPU blocked in `wait_irq` wakes on the vector the device signals; a masked entry
//! holds the vector in the PBA until the guest unmasks it, then it is delivered once.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::sync::Arc;

use acrn_hsm::client::{BarHandler, Bdf};
use acrn_hsm::devices::{Bar, MsiSignal, MsiSink, Msix, MsixConfig, PciFunction};

const BAR: u64 = 0xc000_0000;
const PBA: u64 = 0x800;
const DOORBELL: u64 = 0xc00;
const VECTOR: u64 = 0x45;

/// The device's logic: a write of `k` to its doorbell (BAR0 + 0xc00) signals MSI-X vector `k`.
struct Doorbell {
    msix: Msix,
    signals: Arc<std::sync::Mutex<Vec<MsiSignal>>>,
}

impl IoDevice for Doorbell {
    fn read(&mut self, _offset: u64, _size: u8) -> u64 {
        0
    }
    fn write(&mut self, _offset: u64, _size: u8, value: u64) {
        let s = self.msix.signal(value as u16);
        self.signals.lock().unwrap().push(s);
    }
}

fn cfg(reg: u16, size: u8, access: Access) -> Op {
    Op::pci(0, 3, 0, reg, size, access)
}

fn wait(vector: u64) -> Op {
    Op::WaitIrq {
        irq: IrqWait::Vector(vector as u8),
        timeout_ns: 5_000_000_000,
    }
}

#[test]
fn a_guest_programs_the_msix_table_through_the_bar_and_wakes_on_the_vector() {
    let (emu, hsm, vm) = vm_with(1, 0);
    let sink: Arc<dyn MsiSink> = vm.clone();
    let msix = Msix::new(
        MsixConfig {
            table_size: 4,
            table_bar: 0,
            table_offset: 0,
            pba_bar: 0,
            pba_offset: PBA as u32,
        },
        sink,
    )
    .unwrap();
    let f = PciFunction::new(0x1af4, 0x1041)
        .with_bar(
            0,
            Bar::Mem32 {
                size: 0x1000,
                prefetchable: false,
            },
        )
        .and_then(|f| f.with_msix(&msix))
        .unwrap();
    let signals = Arc::default();
    let bar0 = msix.bar_device(0).with_fallback(Box::new(Doorbell {
        msix: msix.clone(),
        signals: Arc::clone(&signals),
    }));
    let mut d = Dispatcher::new();
    d.add_pci_with_bars(
        Bdf::new(0, 3, 0),
        Box::new(f),
        vec![(0, BarHandler::Native(Box::new(bar0)))],
    )
    .unwrap();
    let mut client = IoreqClient::new(vm.clone(), d, ClientConfig::default()).unwrap();
    let handle = client.handle();
    let t = std::thread::spawn(move || {
        let _ = client.run();
    });
    vm.start().unwrap();

    let entry = BAR + 2 * 16;
    let ops = vec![
        // The capability list: status bit 4, pointer, the MSI-X capability.
        cfg(0x00, 4, Access::expect(0x1041_1af4)),
        cfg(0x06, 2, Access::expect(0x10)),
        cfg(0x34, 1, Access::expect(0x40)),
        cfg(0x40, 2, Access::expect(0x0011)),
        cfg(0x42, 2, Access::expect(3)),
        cfg(0x44, 4, Access::expect(0)),
        cfg(0x48, 4, Access::expect(PBA)),
        // Size and program BAR0, then memory decoding and bus mastering on.
        cfg(0x10, 4, Access::Write(0xffff_ffff)),
        cfg(0x10, 4, Access::expect(0xffff_f000)),
        cfg(0x10, 4, Access::Write(BAR)),
        cfg(0x04, 2, Access::Write(0x6)),
        // MSI-X enable with the function masked while the table is programmed (as Linux does).
        cfg(0x42, 2, Access::Write(0xc000)),
        Op::mmio(entry + 12, 4, Access::expect(1)),
        Op::mmio(entry, 4, Access::Write(0xfee0_0000)),
        Op::mmio(entry + 4, 4, Access::Write(0)),
        Op::mmio(entry + 8, 4, Access::Write(VECTOR)),
        Op::mmio(entry + 12, 4, Access::Write(0)),
        cfg(0x42, 2, Access::Write(0x8000)),
        Op::mmio(entry + 8, 4, Access::expect(VECTOR)),
        // The device signals vector 2: the blocked vCPU wakes.
        Op::mmio(BAR + DOORBELL, 4, Access::Write(2)),
        wait(VECTOR),
        // Masked: the vector waits in the PBA, and the unmask delivers it.
        Op::mmio(entry + 12, 4, Access::Write(1)),
        Op::mmio(BAR + DOORBELL, 4, Access::Write(2)),
        Op::mmio(BAR + PBA, 8, Access::expect(1 << 2)),
        Op::mmio(entry + 12, 4, Access::Write(0)),
        wait(VECTOR),
        Op::mmio(BAR + PBA, 8, Access::expect(0)),
        // A vector beyond the table is nobody's; an access past the table reads 0.
        Op::mmio(BAR + DOORBELL, 4, Access::Write(9)),
        Op::mmio(BAR + 4 * 16, 4, Access::expect(0)),
    ];
    let r = hsm
        .guest(&vm)
        .unwrap()
        .run(&Workload { vcpus: vec![ops] })
        .unwrap();
    handle.stop();
    t.join().unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(
        *signals.lock().unwrap(),
        vec![
            MsiSignal::Delivered,
            MsiSignal::Pending,
            MsiSignal::NoSuchVector
        ]
    );
    let c = emu.irq_counters(vm.vmid()).unwrap();
    assert_eq!((c.msi, c.taken), (2, 2), "two messages, each taken once");
    vm.pause().unwrap();
}
