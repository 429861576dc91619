//! Guest memory and interrupts end to end: the guest touches RAM without exits, a device reads
//! and writes the same RAM through `Vm::memory`, and its interrupts (INJECT_MSI, SET_IRQLINE,
//! an irqfd signalled through an `EventFd`) wake a vCPU blocked in `wait_irq`.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::sync::Arc;
use std::time::Duration;

const RAM: u64 = 0x10_0000;
const DOORBELL: u64 = 0xd000_0000;

/// A DMA device: a write of a descriptor address to its doorbell makes it read the descriptor
/// `{src: u64, dst: u64, len: u32}` from guest RAM, write `src[i] ^ 0xff` to `dst[i]`, and raise
/// the MSI with vector 0x41 on vCPU 0.
struct Dma {
    vm: Arc<Vm>,
}

impl IoDevice for Dma {
    fn read(&mut self, _offset: u64, _size: u8) -> u64 {
        0
    }
    fn write(&mut self, _offset: u64, _size: u8, desc: u64) {
        let m = self.vm.memory();
        let src = m.read_le(desc, 8).expect("src");
        let dst = m.read_le(desc + 8, 8).expect("dst");
        let len = m.read_le(desc + 16, 4).expect("len") as usize;
        let mut buf = vec![0u8; len];
        m.read(src, &mut buf).expect("buffer");
        for b in &mut buf {
            *b ^= 0xff;
        }
        m.write(dst, &buf).expect("result");
        self.vm.inject_msi(0xfee0_0000, 0x41).expect("msi");
    }
}

fn ram_vm() -> (Emulator, Hsm, Arc<Vm>, Arc<UserPages>, Arc<UserPages>) {
    let (emu, hsm, vm) = vm_with(1, 0);
    // Two adjacent segments: accesses across the boundary work for the guest and the device.
    let a = Arc::new(UserPages::new(0x1000).unwrap());
    let b = Arc::new(UserPages::new(0x1000).unwrap());
    vm.map_ram(RAM, a.clone(), 7).unwrap();
    vm.map_ram(RAM + 0x1000, b.clone(), 7).unwrap();
    (emu, hsm, vm, a, b)
}

fn serve(vm: &Arc<Vm>, d: Dispatcher) -> (ClientHandle, std::thread::JoinHandle<()>) {
    let mut client = IoreqClient::new(vm.clone(), d, ClientConfig::default()).expect("client");
    let handle = client.handle();
    let t = std::thread::spawn(move || {
        let _ = client.run();
    });
    (handle, t)
}

#[test]
fn a_dma_device_reads_and_writes_guest_ram_and_its_msi_wakes_the_guest() {
    let (_emu, hsm, vm, _a, b) = ram_vm();
    let mut d = Dispatcher::new();
    d.add_mmio(DOORBELL, 0x1000, Box::new(Dma { vm: vm.clone() }))
        .unwrap();
    let (handle, t) = serve(&vm, d);
    vm.start().unwrap();

    // The buffer straddles the two segments: 0x100ff8..0x101008.
    let src = RAM + 0xff8;
    let dst = RAM + 0x1800;
    let desc = RAM + 0x100;
    let mut ops = vec![
        Op::Ram {
            address: desc,
            size: 8,
            access: Access::Write(src),
        },
        Op::Ram {
            address: desc + 8,
            size: 8,
            access: Access::Write(dst),
        },
        Op::Ram {
            address: desc + 16,
            size: 4,
            access: Access::Write(16),
        },
    ];
    for i in 0..4u64 {
        ops.push(Op::Ram {
            address: src + 4 * i,
            size: 4,
            access: Access::Write(0x0403_0201 * (i + 1)),
        });
    }
    ops.push(Op::mmio(DOORBELL, 8, Access::Write(desc)));
    ops.push(Op::WaitIrq {
        irq: IrqWait::Vector(0x41),
        timeout_ns: 5_000_000_000,
    });
    for i in 0..4u64 {
        ops.push(Op::Ram {
            address: dst + 4 * i,
            size: 4,
            access: Access::expect(!(0x0403_0201u32.wrapping_mul(i as u32 + 1)) as u64),
        });
    }
    // A value the guest writes is what the device model reads, across the boundary too.
    ops.push(Op::Ram {
        address: RAM + 0xffe,
        size: 4,
        access: Access::Write(0xaabb_ccdd),
    });
    let view = vm.memory().view(RAM + 0x1000, 2).unwrap();
    let r = hsm
        .guest(&vm)
        .unwrap()
        .run(&Workload { vcpus: vec![ops] })
        .unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(
        r.issued, 1,
        "RAM accesses make no request, the doorbell one"
    );
    assert_eq!(vm.memory().read_le(RAM + 0xffe, 4).unwrap(), 0xaabb_ccdd);
    let mut two = [0u8; 2];
    b.read_bytes(0, &mut two).unwrap();
    assert_eq!(two, [0xbb, 0xaa]);
    // The view made before the guest's write sees it.
    // SAFETY: the view covers 2 bytes; read with a byte atomic.
    let seen = unsafe { std::sync::atomic::AtomicU8::from_ptr(view.as_ptr()) }
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(seen, 0xbb);
    let c = _emu.irq_counters(vm.vmid()).unwrap();
    assert_eq!((c.msi, c.taken), (1, 1));
    handle.stop();
    t.join().unwrap();
    vm.pause().unwrap();
}

#[test]
fn a_ram_read_that_mismatches_is_reported_and_unmapped_ram_is_mmio() {
    let (_emu, hsm, vm, _a, _b) = ram_vm();
    vm.start().unwrap();
    let w = Workload::from_json(
        r#"{"vcpus": [[{"ram": "0x100010", "size": 2, "write": 513},
            {"ram": "0x100010", "size": 2, "read": true, "expect": 514},
            {"ram": "0x300000", "size": 4, "read": true}]]}"#,
    )
    .unwrap();
    let (handle, t) = serve(&vm, Dispatcher::new());
    let r = hsm.guest(&vm).unwrap().run(&w).unwrap();
    assert_eq!(r.mismatches.len(), 1, "{r:?}");
    assert_eq!(
        (r.mismatches[0].expected, r.mismatches[0].actual),
        (514, 513)
    );
    assert_eq!(r.issued, 1, "the access without RAM went out as MMIO");
    handle.stop();
    t.join().unwrap();
    vm.pause().unwrap();
}

fn wait_then(vm: &Arc<Vm>, hsm: &Hsm, irq: IrqWait, raise: impl FnOnce() + Send + 'static) {
    let run = hsm.guest(vm).unwrap().spawn(&Workload {
        vcpus: vec![vec![Op::WaitIrq {
            irq,
            timeout_ns: 5_000_000_000,
        }]],
    });
    std::thread::sleep(Duration::from_millis(30));
    raise();
    let r = run.unwrap().join();
    assert!(r.is_clean(), "{irq:?}: {r:?}");
}

#[test]
fn a_line_an_msi_and_an_irqfd_each_wake_a_blocked_vcpu() {
    let (emu, hsm, vm, _a, _b) = ram_vm();
    vm.start().unwrap();
    let v = vm.clone();
    wait_then(&vm, &hsm, IrqWait::Gsi(5), move || {
        v.set_irqline(5, 2).unwrap()
    });
    let v = vm.clone();
    wait_then(&vm, &hsm, IrqWait::Vector(0x33), move || {
        v.inject_msi(0xfee0_0000, 0x33).unwrap()
    });
    let efd = Arc::new(EventFd::new(0, false).unwrap());
    vm.irqfd(&IrqFd {
        fd: efd.fd(),
        flags: 0,
        msi_addr: 0xfee0_0000,
        msi_data: 0x44,
    })
    .unwrap();
    let e = efd.clone();
    wait_then(&vm, &hsm, IrqWait::Vector(0x44), move || {
        e.write(1).unwrap()
    });
    // Nothing pending: the wait times out, reported as a fault.
    let r = hsm
        .guest(&vm)
        .unwrap()
        .run(&Workload {
            vcpus: vec![vec![Op::WaitIrq {
                irq: IrqWait::Vector(0x44),
                timeout_ns: 1_000_000,
            }]],
        })
        .unwrap();
    assert_eq!(r.faults.len(), 1);
    assert_eq!(r.faults[0].kind, FaultKind::IrqTimeout);
    assert_eq!(emu.irq_counters(vm.vmid()).unwrap().taken, 3);
    vm.pause().unwrap();
}
