//! Real guest code on the KVM engine: small guests assembled here (machine code bytes, every
//! instruction commented), run behind the ACRN ABI; every exit must become exactly one I/O
//! request served by the ioreq client, with the values the guest expects. Skipped (with a
#![allow(clippy::unwrap_used)]

//! printed reason) where `/dev/kvm` is missing or unusable.

use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use acrn_hsm::*;
use acrn_hsm_emulator::kvm;
use acrn_hsm_emulator::*;

fn kvm_or_skip(test: &str) -> bool {
    let p = kvm::probe();
    if !p.usable {
        println!("SKIP {test}: KVM engine unusable here: {}", p.reason);
    }
    p.usable
}

/// Every access the devices saw, in order: (space, addr, size, write, value).
type Log = Arc<Mutex<Vec<(char, u64, u8, bool, u64)>>>;

struct Machine {
    emu: Emulator,
    vm: Arc<Vm>,
    client: Option<JoinHandle<ClientStats>>,
    handle: ClientHandle,
    done: mpsc::Receiver<u64>,
    _ram: Arc<UserPages>,
}

/// A device logging into `log`; reads answer `read(addr)`; a write to port 0xf4 reports "done".
fn logger(
    space: char,
    base: u64,
    log: Log,
    done: Option<mpsc::Sender<u64>>,
    read: impl Fn(u64, u8) -> u64 + Send + 'static,
) -> Box<dyn IoDevice> {
    let l2 = log.clone();
    Box::new(devices::FnDevice::new(
        "logger",
        move |off, size| {
            let v = read(base + off, size);
            l2.lock().unwrap().push((space, base + off, size, false, v));
            v
        },
        move |off, size, v| {
            log.lock().unwrap().push((space, base + off, size, true, v));
            if base + off == 0xf4 {
                if let Some(d) = &done {
                    let _ = d.send(v);
                }
            }
        },
    ))
}

fn real_mode_regs(rip: u64) -> VcpuRegs {
    VcpuRegs {
        rip,
        cr0: 0x30, // ET | NE
        cs_ar: 0x9b,
        cs_limit: 0xffff,
        rflags: 2,
        gprs: {
            let mut g = [0u64; 16];
            g[4] = 0x8000; // rsp
            g
        },
        ..Default::default()
    }
}

/// A 1-vCPU VM on the KVM engine with `code` at 0x1000 of 640 KiB of RAM, the devices of
/// `setup`, started; `polling` chooses the completion mode.
fn machine(
    code: &[u8],
    polling: bool,
    regs: VcpuRegs,
    setup: impl FnOnce(&mut Dispatcher, mpsc::Sender<u64>),
) -> Machine {
    machine_with(&[(0x1000, code.to_vec())], polling, regs, setup)
}

/// [`machine`] with several blobs in RAM (`(gpa, bytes)`).
fn machine_with(
    blobs: &[(usize, Vec<u8>)],
    polling: bool,
    regs: VcpuRegs,
    setup: impl FnOnce(&mut Dispatcher, mpsc::Sender<u64>),
) -> Machine {
    let emu = Emulator::new();
    emu.set_engine(Engine::Kvm);
    let hsm = emu.open_hsm();
    let vm = Arc::new(
        hsm.create_vm(&VmConfig {
            vcpu_num: 1,
            vm_flag: if polling {
                GUEST_FLAG_IO_COMPLETION_POLLING
            } else {
                0
            },
            ..Default::default()
        })
        .expect("create_vm"),
    );
    let ram = Arc::new(UserPages::new(0xa0000).expect("ram"));
    for (gpa, b) in blobs {
        ram.write_bytes(*gpa, b).expect("guest memory");
    }
    vm.map_ram(0, ram.clone(), 0x7).expect("map_ram");
    vm.set_vcpu_regs(&regs).expect("regs");
    let (tx, rx) = mpsc::channel();
    let mut d = Dispatcher::new();
    setup(&mut d, tx);
    let mode = if polling {
        WakeMode::poll()
    } else {
        WakeMode::Blocking
    };
    let mut client = IoreqClient::new(
        vm.clone(),
        d,
        ClientConfig {
            mode,
            ..Default::default()
        },
    )
    .expect("client");
    let handle = client.handle();
    let t = std::thread::spawn(move || {
        client.run().expect("client run");
        client.stats()
    });
    vm.start().unwrap_or_else(|e| {
        panic!(
            "start: {e}: {:?}",
            emu.kvm_error(vm.vmid()).unwrap_or_default()
        )
    });
    Machine {
        emu,
        vm,
        client: Some(t),
        handle,
        done: rx,
        _ram: ram,
    }
}

impl Machine {
    fn wait_done(&self, secs: u64) -> u64 {
        match self.done.recv_timeout(Duration::from_secs(secs)) {
            Ok(v) => v,
            Err(_) => panic!(
                "guest did not finish: exits {:?}, stats {:?}",
                self.emu.guest_exits(self.vm.vmid()),
                self.emu.kvm_stats(self.vm.vmid())
            ),
        }
    }

    /// Waits until the engine has completed `n` requests (the guest's last one included, so
    /// that PAUSE finds no request in flight), up to 10 s.
    fn settle(&self, n: u64) {
        for _ in 0..1000 {
            if self
                .emu
                .kvm_stats(self.vm.vmid())
                .is_some_and(|s| s.completed >= n)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// PAUSE, DESTROY (the DM's order), stop the client; its stats.
    fn finish(mut self) -> (KvmStats, ClientStats) {
        self.vm.pause().expect("pause");
        self.vm.clear_vm_ioreq().expect("clear");
        self.handle.stop();
        self.vm.destroy_ioreq_client().ok();
        let cs = self.client.take().expect("client").join().expect("client");
        self.vm.destroy().expect("destroy");
        // After DESTROY every vCPU thread has been joined: the counters are final.
        (self.emu.kvm_stats(self.vm.vmid()).expect("stats"), cs)
    }
}

/// Real mode: PIO out/in of 1 and 2 bytes (the read values are echoed back, so post-work into
/// AL/AX is checked), MMIO reads and writes of 2 and 4 bytes, a loop of 500 out/in pairs.
fn real_mode_guest() -> Vec<u8> {
    let mut c = vec![
        0xb0, 0x5a, // mov al, 0x5a
        0xe6, 0x80, // out 0x80, al
        0xe4, 0x81, // in al, 0x81          (device: 0x11)
        0xe6, 0x82, // out 0x82, al         (0x11 echoed)
        0xb8, 0x34, 0x12, // mov ax, 0x1234
        0xba, 0x00, 0x05, // mov dx, 0x500
        0xef, // out dx, ax                 (0x500, 2 bytes)
        0xed, // in ax, dx                  (device: 0xbeef)
        0xe7, 0x84, // out 0x84, ax         (0xbeef echoed)
        0xb8, 0x00, 0xa0, // mov ax, 0xa000
        0x8e, 0xd8, // mov ds, ax
        0xa1, 0x10, 0x00, // mov ax, [0x10]  (MMIO 0xa0010, 2 bytes: 0xcafe)
        0xe7, 0x86, // out 0x86, ax         (0xcafe echoed)
        0xc7, 0x06, 0x20, 0x00, 0xef, 0xbe, // mov word [0x20], 0xbeef
        0x66, 0xc7, 0x06, 0x30, 0x00, 0x78, 0x56, 0x34, 0x12, // mov dword [0x30], 0x12345678
        0x66, 0xa1, 0x40, 0x00, // mov eax, [0x40] (MMIO 4 bytes: 0x89abcdef)
        0x66, 0xe7, 0x88, // out 0x88, eax  (echoed)
        0x66, 0xb8, 0x00, 0x00, 0x00, 0x80, // mov eax, 0x80000000 (00:00.0, register 0)
        0xba, 0xf8, 0x0c, // mov dx, 0xcf8
        0x66, 0xef, // out dx, eax      (HSM's cf8 latch: completed in the kernel)
        0xba, 0xfc, 0x0c, // mov dx, 0xcfc
        0x66, 0xed, // in eax, dx       (a PCICFG request: 0x12348086)
        0x66, 0xe7, 0x8c, // out 0x8c, eax  (echoed)
        0xb9, 0xf4, 0x01, // mov cx, 500
        // loop:
        0xe6, 0x8a, // out 0x8a, al
        0xe4, 0x8b, // in al, 0x8b
        0xe2, 0xfa, // loop loop
        0xb0, 0x07, // mov al, 7
        0xe6, 0xf4, // out 0xf4, al         (done)
        0xf4, // hlt
        0xeb, 0xfd, // jmp hlt
    ];
    c.shrink_to_fit();
    c
}

fn run_real_mode(polling: bool) {
    let log: Log = Default::default();
    let l = log.clone();
    let m = machine(
        &real_mode_guest(),
        polling,
        real_mode_regs(0x1000),
        |d, tx| {
            let read = |a: u64, _s: u8| match a {
                0x81 => 0x11,
                0x500 => 0xbeef,
                0xa0010 => 0xcafe,
                0xa0040 => 0x89ab_cdef,
                0x8b => 0x77,
                _ => 0,
            };
            d.add_pio(0x80, 16, logger('p', 0x80, l.clone(), None, read))
                .unwrap();
            d.add_pio(0x500, 2, logger('p', 0x500, l.clone(), None, read))
                .unwrap();
            d.add_pio(0xf4, 1, logger('p', 0xf4, l.clone(), Some(tx), read))
                .unwrap();
            d.add_mmio(0xa0000, 0x1000, logger('m', 0xa0000, l, None, read))
                .unwrap();
            d.add_pci(
                acrn_hsm::client::Bdf::new(0, 0, 0),
                Box::new(devices::PciFunction::new(0x8086, 0x1234)),
            )
            .unwrap();
        },
    );
    assert_eq!(m.wait_done(60), 7);
    m.settle(log.lock().unwrap().len() as u64 + 2);
    let (ks, cs) = m.finish();
    let log = log.lock().unwrap().clone();
    let head: Vec<_> = log.iter().take(11).copied().collect();
    assert_eq!(
        head,
        vec![
            ('p', 0x80, 1, true, 0x5a),
            ('p', 0x81, 1, false, 0x11),
            ('p', 0x82, 1, true, 0x11),
            ('p', 0x500, 2, true, 0x1234),
            ('p', 0x500, 2, false, 0xbeef),
            ('p', 0x84, 2, true, 0xbeef),
            ('m', 0xa0010, 2, false, 0xcafe),
            ('p', 0x86, 2, true, 0xcafe),
            ('m', 0xa0020, 2, true, 0xbeef),
            ('m', 0xa0030, 4, true, 0x1234_5678),
            ('m', 0xa0040, 4, false, 0x89ab_cdef),
        ]
    );
    assert_eq!(log[11], ('p', 0x88, 4, true, 0x89ab_cdef));
    // The PCI vendor/device dword, read through 0xCF8/0xCFC as a PCICFG request.
    assert_eq!(log[12], ('p', 0x8c, 4, true, 0x1234_8086));
    let body = &log[13..log.len() - 1];
    assert_eq!(body.len(), 1000);
    for (i, pair) in body.chunks(2).enumerate() {
        // AL is the PCI dword's low byte, then the value read from 0x8b.
        let al = if i == 0 { 0x86 } else { 0x77 };
        assert_eq!(pair[0], ('p', 0x8a, 1, true, al), "iteration {i}");
        assert_eq!(pair[1], ('p', 0x8b, 1, false, 0x77), "iteration {i}");
    }
    assert_eq!(*log.last().unwrap(), ('p', 0xf4, 1, true, 7));
    // Plus the 0xCF8 write (the HSM's) and the 0xCFC read (the PCI function's).
    let n = log.len() as u64 + 2;
    assert_eq!(ks.issued, n, "every exit issued once: {ks:?} {cs:?}");
    assert_eq!(ks.completed, n, "every exit completed once");
    assert_eq!(ks.exits, n);
    assert_eq!(ks.faults, 0);
    assert_eq!(
        cs.handled(),
        n - 1,
        "the client handled each request once (not 0xCF8)"
    );
    assert_eq!(cs.pci_reads, 1);
}

/// Long mode (4-level paging, 2 MiB pages, a 64-bit IDT): RAM through the page tables, 8-byte
/// MMIO, PCI configuration through 0xCF8/0xCFC, then an MSI (INJECT_MSI → KVM_SIGNAL_MSI) taken
/// by the guest's handler on vector 0x40 after it enabled its LAPIC.
fn run_long_mode(polling: bool) {
    let mut code: Vec<u8> = vec![
        0x48, 0xc7, 0x04, 0x25, 0x00, 0x80, 0x00, 0x00, 0x78, 0x56, 0x34,
        0x12, // mov qword [0x8000], 0x12345678
        0x48, 0x8b, 0x04, 0x25, 0x00, 0x80, 0x00, 0x00, // mov rax, [0x8000]
        0xe7, 0x80, // out 0x80, eax
        0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x0a, 0x00, // mov rax, [0xa0000]  (MMIO, 8 bytes)
        0x48, 0x89, 0x04, 0x25, 0x08, 0x00, 0x0a, 0x00, // mov [0xa0008], rax  (MMIO, 8 bytes)
        0xb8, 0x00, 0x00, 0x00, 0x80, // mov eax, 0x80000000
        0x66, 0xba, 0xf8, 0x0c, // mov dx, 0xcf8
        0xef, // out dx, eax
        0x66, 0xba, 0xfc, 0x0c, // mov dx, 0xcfc
        0xed, // in eax, dx
        0xe7, 0x84, // out 0x84, eax
        0xbb, 0x00, 0x00, 0xe0, 0xfe, // mov ebx, 0xfee00000
        0xc7, 0x83, 0xf0, 0x00, 0x00, 0x00, 0xff, 0x01, 0x00,
        0x00, // LAPIC SVR = 0x1ff (enabled)
        0x31, 0xf6, // xor esi, esi
        0xfb, // sti
        0xe6, 0x91, // out 0x91, al   (the test injects the MSI)
        0x85, 0xf6, // wait: test esi, esi
        0x74, 0xfc, // jz wait
        0xfa, // cli
        0x89, 0xf0, // mov eax, esi
        0xe6, 0xf4, // out 0xf4, al
        0xf4, 0xeb, 0xfd, // hlt; jmp hlt
    ];
    let handler = 0x1000 + code.len() as u64;
    code.extend_from_slice(&[
        0xff, 0xc6, // inc esi
        0xc7, 0x83, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // LAPIC EOI
        0x48, 0xcf, // iretq
    ]);
    let q = |v: u64| v.to_le_bytes().to_vec();
    let mut pd_high = vec![0u8; 4096];
    let i = ((0xfee0_0000u64 - 0xc000_0000) >> 21) as usize;
    pd_high[i * 8..i * 8 + 8].copy_from_slice(&(0xfee0_0000u64 | 0x9b).to_le_bytes());
    let mut pdpt = vec![0u8; 4096];
    pdpt[..8].copy_from_slice(&(0x4000u64 | 3).to_le_bytes());
    pdpt[24..32].copy_from_slice(&(0x5000u64 | 3).to_le_bytes());
    let mut idt = vec![0u8; 4096];
    let gate = (handler & 0xffff) | (0x08 << 16) | (0x8e << 40) | ((handler >> 16) & 0xffff) << 48;
    idt[0x40 * 16..0x40 * 16 + 8].copy_from_slice(&gate.to_le_bytes());
    let gdt = [q(0), q(0x00af_9b00_0000_ffff), q(0x00cf_9300_0000_ffff)].concat();
    let blobs = vec![
        (0x1000, code),
        (0x2000, q(0x3000 | 3)),
        (0x3000, pdpt),
        (0x4000, q(0x83)),
        (0x5000, pd_high),
        (0x6000, gdt),
        (0x7000, idt),
    ];
    let regs = VcpuRegs {
        rip: 0x1000,
        cr0: 0x8000_0031, // PG | NE | ET | PE
        cr4: 0x20,        // PAE
        cr3: 0x2000,
        ia32_efer: 0x500, // LME | LMA
        gdt: (23, 0x6000),
        idt: (4095, 0x7000),
        cs_ar: 0xa09b, // G, L, P, S, code
        cs_limit: 0xffff_ffff,
        rflags: 2,
        selectors: [0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0, 0],
        gprs: {
            let mut g = [0u64; 16];
            g[4] = 0x9000;
            g
        },
        ..Default::default()
    };
    let log: Log = Default::default();
    let l = log.clone();
    let (ready_tx, ready_rx) = mpsc::channel::<u64>();
    let m = machine_with(&blobs, polling, regs, |d, tx| {
        let read = |a: u64, _s: u8| {
            if a == 0xa0000 {
                0x1122_3344_5566_7788
            } else {
                0
            }
        };
        d.add_pio(0x80, 16, logger('p', 0x80, l.clone(), None, read))
            .unwrap();
        let l2 = l.clone();
        d.add_pio(
            0x91,
            1,
            Box::new(devices::FnDevice::new(
                "ready",
                |_, _| 0,
                move |off, size, v| {
                    l2.lock().unwrap().push(('p', 0x91 + off, size, true, v));
                    let _ = ready_tx.send(v);
                },
            )),
        )
        .unwrap();
        d.add_pio(0xf4, 1, logger('p', 0xf4, l.clone(), Some(tx), read))
            .unwrap();
        d.add_mmio(0xa0000, 0x1000, logger('m', 0xa0000, l, None, read))
            .unwrap();
        d.add_pci(
            acrn_hsm::client::Bdf::new(0, 0, 0),
            Box::new(devices::PciFunction::new(0x8086, 0x1234)),
        )
        .unwrap();
    });
    ready_rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("guest not ready: {:?}", m.emu.guest_exits(m.vm.vmid())));
    m.vm.inject_msi(0xfee0_0000, 0x40).unwrap();
    assert_eq!(m.wait_done(60), 1, "the handler ran once");
    m.settle(8);
    let (ks, cs) = m.finish();
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![
            ('p', 0x80, 4, true, 0x1234_5678),
            ('m', 0xa0000, 8, false, 0x1122_3344_5566_7788),
            ('m', 0xa0008, 8, true, 0x1122_3344_5566_7788),
            ('p', 0x84, 4, true, 0x1234_8086),
            ('p', 0x91, 1, true, 0x86),
            ('p', 0xf4, 1, true, 1),
        ]
    );
    assert_eq!((ks.exits, ks.issued, ks.completed, ks.faults), (8, 8, 8, 0));
    assert_eq!(ks.irqs, 1);
    assert_eq!(cs.handled(), 7);
}

#[test]
fn long_mode_ram_mmio_pci_msi_notify() {
    if kvm_or_skip("long_mode_ram_mmio_pci_msi_notify") {
        run_long_mode(false);
    }
}

#[test]
fn long_mode_ram_mmio_pci_msi_polling() {
    if kvm_or_skip("long_mode_ram_mmio_pci_msi_polling") {
        run_long_mode(true);
    }
}

#[test]
fn real_mode_pio_mmio_notify() {
    if kvm_or_skip("real_mode_pio_mmio_notify") {
        run_real_mode(false);
    }
}

#[test]
fn real_mode_pio_mmio_polling() {
    if kvm_or_skip("real_mode_pio_mmio_polling") {
        run_real_mode(true);
    }
}

// ---- through the `run` scenario (the platform devices, the raw loader) ---------------------

use acrn_hsm_tools::run::{Console, Payload, RunConfig, RunEnd, run_guest};

fn run_raw(
    code: Vec<u8>,
    addr: u64,
    regs: VcpuRegs,
    polling: bool,
) -> acrn_hsm_tools::run::RunReport {
    run_guest(&raw_config(code, addr, regs, polling)).expect("run_guest")
}

fn raw_config(code: Vec<u8>, addr: u64, regs: VcpuRegs, polling: bool) -> RunConfig {
    RunConfig {
        payload: Payload::Raw {
            bytes: code,
            addr,
            regs: Box::new(regs),
        },
        mem_mib: 2,
        polling,
        console: Console::Capture,
        timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    }
}

/// The kernel sample's style of payload: real mode at GPA 0 with the sample's registers
/// (CS access rights 0x9F, CR0 = ET|NE), printing through COM1 and leaving through
/// isa-debug-exit.
fn vm_sample_payload() -> Vec<u8> {
    let mut c = Vec::new();
    c.extend_from_slice(&[0xba, 0xf8, 0x03]); // mov dx, 0x3f8
    for &b in b"Hello from a real guest\n" {
        c.extend_from_slice(&[0xb0, b, 0xee]); // mov al, b; out dx, al
    }
    c.extend_from_slice(&[0xb0, 0x10, 0xe6, 0xf4]); // mov al, 0x10; out 0xf4, al
    c.extend_from_slice(&[0xf4, 0xeb, 0xfd]); // hlt; jmp hlt
    c
}

fn vm_sample(polling: bool) {
    let r = run_raw(
        vm_sample_payload(),
        0,
        acrn_hsm::loader::real_mode_regs(0),
        polling,
    );
    assert_eq!(r.end, RunEnd::DebugExit(0x10));
    assert_eq!(r.status, 0x21, "(0x10 << 1) | 1");
    assert_eq!(
        String::from_utf8_lossy(&r.serial),
        "Hello from a real guest\n"
    );
    // 24 THR writes + the debug exit; the last may be withheld by the power-off.
    assert!(r.kvm.exits == 25, "{:?}", r.kvm);
    assert_eq!(r.kvm.issued, 25);
    assert!(r.kvm.completed >= 24, "{:?}", r.kvm);
    assert_eq!(r.client.pio_writes, 25);
    assert_eq!(r.kvm.faults, 0);
}

#[test]
fn vm_sample_payload_notify() {
    if kvm_or_skip("vm_sample_payload_notify") {
        vm_sample(false);
    }
}

#[test]
fn vm_sample_payload_polling() {
    if kvm_or_skip("vm_sample_payload_polling") {
        vm_sample(true);
    }
}

/// COM1's THRE interrupt on IRQ 4 through SET_IRQLINE into the in-kernel PIC: the guest
/// programs the PIC (vector base 8), installs an IVT handler for vector 0x0C, enables OUT2 and
/// IER.THRE, and waits; the handler reads IIR (sent to debugcon), disables the interrupt, EOIs.
fn irq_guest() -> Vec<u8> {
    let mut c: Vec<u8> = vec![
        0xfa, // cli
        0xb0, 0x11, 0xe6, 0x20, // ICW1
        0xb0, 0x08, 0xe6, 0x21, // ICW2: vector base 8
        0xb0, 0x04, 0xe6, 0x21, // ICW3
        0xb0, 0x01, 0xe6, 0x21, // ICW4: 8086 mode
        0xb0, 0xef, 0xe6, 0x21, // OCW1: only IRQ 4 unmasked
        0xc7, 0x06, 0x30, 0x00, 0x00, 0x00, // mov word [0x30], handler (patched)
        0xc7, 0x06, 0x32, 0x00, 0x00, 0x00, // mov word [0x32], 0
        0x31, 0xdb, // xor bx, bx
        0xba, 0xfc, 0x03, 0xb0, 0x08, 0xee, // MCR = OUT2
        0xba, 0xf9, 0x03, 0xb0, 0x02, // dx = IER, al = THRE
        0xfb, // sti
        0xee, // out dx, al      (THR empty: the interrupt is pending at once)
        // wait:
        0x83, 0xfb, 0x01, // cmp bx, 1
        0x72, 0xfb, // jb wait
        0xfa, // cli
        0x88, 0xd8, // mov al, bl
        0xe6, 0xf4, // out 0xf4, al   (status (1 << 1) | 1)
        0xf4, 0xeb, 0xfd, // hlt; jmp hlt
    ];
    let handler = 0x1000 + c.len() as u16;
    c[25..27].copy_from_slice(&handler.to_le_bytes());
    c.extend_from_slice(&[
        0x43, // inc bx
        0xba, 0xfa, 0x03, 0xec, // in al, IIR
        0xba, 0x02, 0x04, 0xee, // out 0x402 (debugcon), al
        0xba, 0xf9, 0x03, 0x30, 0xc0, 0xee, // IER = 0
        0xb0, 0x20, 0xe6, 0x20, // EOI
        0xcf, // iret
    ]);
    c
}

fn irq(polling: bool) {
    let mut regs = acrn_hsm::loader::real_mode_regs(0x1000);
    regs.gprs[4] = 0x8000;
    let r = run_raw(irq_guest(), 0x1000, regs, polling);
    assert_eq!(r.end, RunEnd::DebugExit(1), "{:?}", r);
    assert_eq!(r.status, 3);
    assert_eq!(r.debugcon, vec![0x02], "IIR said: THR empty");
    assert!(r.uart_irqs >= 1 && r.kvm.irqs >= 1, "{:?}", r);
}

#[test]
fn uart_interrupt_notify() {
    if kvm_or_skip("uart_interrupt_notify") {
        irq(false);
    }
}

#[test]
fn uart_interrupt_polling() {
    if kvm_or_skip("uart_interrupt_polling") {
        irq(true);
    }
}

/// Protected mode, flat 4 GiB segments, IDT limit 0.
fn flat_protected_regs(rip: u64) -> VcpuRegs {
    VcpuRegs {
        rip,
        cr0: 0x31, // PE | ET | NE
        cs_ar: 0xc09b,
        cs_limit: 0xffff_ffff,
        rflags: 2,
        selectors: [0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0, 0],
        ..Default::default()
    }
}

/// A guest that triple-faults (int3 with an empty protected-mode IDT: #GP, #DF, shutdown) ends
/// the run with a report naming it.
#[test]
fn triple_fault_is_reported() {
    if !kvm_or_skip("triple_fault_is_reported") {
        return;
    }
    let code = vec![
        0x31, 0xc9, // xor ecx, ecx
        0xf7, 0xf1, // div ecx: #DE with an empty IDT: #GP, #DF, shutdown
    ];
    let mut config = raw_config(code, 0x1000, flat_protected_regs(0x1000), false);
    config.timeout = Some(Duration::from_secs(10));
    let r = run_guest(&config).expect("run_guest");
    let RunEnd::GuestExit(e) = &r.end else {
        panic!("expected a guest exit, got {:?}", r.end);
    };
    println!("{e}");
    assert_eq!(e.kind, GuestExitKind::Shutdown);
    assert_eq!(r.status, 2);
    assert_eq!(r.kvm.live_threads, 0, "no vCPU thread left");
}

/// Protected mode, flat 4 GiB code segment; the guest jumps to an address with neither RAM nor
/// a device: the run ends with a report (never a hang).
#[test]
fn bad_rip_is_reported() {
    if !kvm_or_skip("bad_rip_is_reported") {
        return;
    }
    let regs = flat_protected_regs(0x1000);
    let code = vec![
        0xb8, 0x00, 0x00, 0x00, 0xd0, // mov eax, 0xd0000000
        0xff, 0xe0, // jmp eax
    ];
    let r = run_raw(code, 0x1000, regs, false);
    println!("{:?}", r.end);
    let RunEnd::GuestExit(e) = &r.end else {
        panic!("expected a guest exit, got {:?} ({:?})", r.end, r.kvm);
    };
    println!("{e}");
    assert_eq!(r.status, 2);
    assert_eq!(r.kvm.live_threads, 0, "no vCPU thread left");
}

/// PAUSE / RESET / DESTROY of a running KVM guest, the device model's sequence: after PAUSE
/// (and CLEAR_VM_IOREQ) nothing more arrives; after RESET + SET_VCPU_REGS + START the guest
/// runs again from its first instruction; every value arrives once, in order; DESTROY leaves no
/// vCPU thread.
fn lifecycle(polling: bool) {
    let code = vec![
        0x31, 0xc0, // xor ax, ax
        0x40, // l: inc ax
        0xe7, 0x80, // out 0x80, ax
        0xeb, 0xfb, // jmp l
    ];
    let log: Log = Default::default();
    let l = log.clone();
    let m = machine(&code, polling, real_mode_regs(0x1000), |d, _tx| {
        d.add_pio(0x80, 2, logger('p', 0x80, l, None, |_, _| 0))
            .unwrap();
    });
    let wait_len = |n: usize| {
        for _ in 0..2000 {
            if log.lock().unwrap().len() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!(
            "guest made no progress: {:?}",
            m.emu.guest_exits(m.vm.vmid())
        );
    };
    wait_len(200);
    m.vm.pause().unwrap();
    m.vm.clear_vm_ioreq().unwrap();
    // A request the client claimed before PAUSE may still reach its device (a polling client
    // serves on its own thread): wait until that one is done, then nothing more may come.
    let mut n1 = log.lock().unwrap().len();
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(20));
        let n = log.lock().unwrap().len();
        if n == n1 {
            break;
        }
        n1 = n;
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(log.lock().unwrap().len(), n1, "nothing after PAUSE");
    for _ in 0..200 {
        if m.emu.kvm_stats(m.vm.vmid()).unwrap().live_threads == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        m.emu.kvm_stats(m.vm.vmid()).unwrap().live_threads,
        0,
        "paused: vCPU threads ended"
    );
    m.vm.reset().unwrap();
    m.vm.set_vcpu_regs(&real_mode_regs(0x1000)).unwrap();
    m.vm.start().unwrap();
    wait_len(n1 + 200);
    let s = m.emu.kvm_stats(m.vm.vmid()).unwrap();
    assert_eq!(s.starts, 2);
    let (ks, _cs) = m.finish();
    assert_eq!(ks.live_threads, 0, "destroyed: no vCPU thread left");
    let log = log.lock().unwrap().clone();
    let values: Vec<u64> = log.iter().map(|e| e.4).collect();
    // First run: 1, 2, 3, ... n1 (each once, in order); second run starts at 1 again.
    for (i, v) in values[..n1].iter().enumerate() {
        assert_eq!(*v, i as u64 + 1, "first run, request {i}");
    }
    for (i, v) in values[n1..].iter().enumerate() {
        assert_eq!(*v, i as u64 + 1, "after reset, request {i}");
    }
    assert!(
        ks.issued >= log.len() as u64 && ks.issued <= log.len() as u64 + 2,
        "{ks:?} vs {}",
        log.len()
    );
}

#[test]
fn pause_reset_destroy_running_guest_notify() {
    if kvm_or_skip("pause_reset_destroy_running_guest_notify") {
        lifecycle(false);
    }
}

#[test]
fn pause_reset_destroy_running_guest_polling() {
    if kvm_or_skip("pause_reset_destroy_running_guest_polling") {
        lifecycle(true);
    }
}

/// CPUID as an ACRN User VM sees it: the hypervisor bit, and leaf 0x40000000 "ACRNACRNACRN"
/// with 0x40000010 as its highest leaf.
#[test]
fn cpuid_shows_the_acrn_hypervisor_leaf() {
    if !kvm_or_skip("cpuid_shows_the_acrn_hypervisor_leaf") {
        return;
    }
    let code = vec![
        0x66, 0xb8, 0x00, 0x00, 0x00, 0x40, // mov eax, 0x40000000
        0x0f, 0xa2, // cpuid
        0x66, 0xe7, 0x80, // out 0x80, eax
        0x66, 0x89, 0xd8, 0x66, 0xe7, 0x80, // mov eax, ebx; out 0x80, eax
        0x66, 0x89, 0xc8, 0x66, 0xe7, 0x80, // mov eax, ecx; out 0x80, eax
        0x66, 0x89, 0xd0, 0x66, 0xe7, 0x80, // mov eax, edx; out 0x80, eax
        0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
        0x0f, 0xa2, // cpuid
        0x66, 0x89, 0xc8, 0x66, 0xe7, 0x84, // mov eax, ecx; out 0x84, eax
        0xb0, 0x07, 0xe6, 0xf4, // done
        0xf4, 0xeb, 0xfd,
    ];
    let log: Log = Default::default();
    let l = log.clone();
    let m = machine(&code, false, real_mode_regs(0x1000), |d, tx| {
        d.add_pio(0x80, 16, logger('p', 0x80, l.clone(), None, |_, _| 0))
            .unwrap();
        d.add_pio(0xf4, 1, logger('p', 0xf4, l, Some(tx), |_, _| 0))
            .unwrap();
    });
    assert_eq!(m.wait_done(60), 7);
    m.settle(6);
    let _ = m.finish();
    let v: Vec<u64> = log.lock().unwrap().iter().map(|e| e.4).collect();
    let acrn = u64::from(u32::from_le_bytes(*b"ACRN"));
    assert_eq!(&v[..4], &[0x4000_0010, acrn, acrn, acrn]);
    assert_ne!(v[4] & (1 << 31), 0, "CPUID.1:ECX.hypervisor");
}

/// The bzImage loader (boot protocol 2.06+, 64-bit entry) with a synthetic image: a setup
/// header and, at the 64-bit entry (`load + 0x200`), code that checks what a kernel relies on —
/// long mode with RSI = the zero page ("HdrS" at 0x202), the command line at `cmd_line_ptr`
/// (printed on COM1), the e820 entry count (printed as a digit), the initrd's size — and leaves
/// through isa-debug-exit with 0x10 when all hold, 0x11 otherwise.
#[test]
fn bzimage_loader_64bit_entry() {
    if !kvm_or_skip("bzimage_loader_64bit_entry") {
        return;
    }
    let mut img = vec![0u8; 5 * 512];
    img[0x1f1] = 4; // setup_sects
    img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    img[0x201] = 0x6a; // header length
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    img[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
    img[0x236] = 1; // XLF_KERNEL_64
    img[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
    let mut k = vec![0x90u8; 0x200]; // the 32-bit entry (unused)
    k.extend_from_slice(&[
        0x81, 0xbe, 0x02, 0x02, 0x00, 0x00, 0x48, 0x64, 0x72,
        0x53, // cmp dword [rsi+0x202], "HdrS"
        0x75, 0x3c, // jne fail
        0x8b, 0x9e, 0x28, 0x02, 0x00, 0x00, // mov ebx, [rsi+0x228]  (cmd_line_ptr)
        0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
        // print:
        0x8a, 0x03, // mov al, [rbx]
        0x84, 0xc0, // test al, al
        0x74, 0x06, // jz printed
        0xee, // out dx, al
        0x48, 0xff, 0xc3, // inc rbx
        0xeb, 0xf4, // jmp print
        // printed:
        0x8a, 0x86, 0xe8, 0x01, 0x00, 0x00, // mov al, [rsi+0x1e8]  (e820_entries)
        0x04, 0x30, // add al, '0'
        0xee, // out dx, al
        0x81, 0xbe, 0x1c, 0x02, 0x00, 0x00, 0x00, 0x30, 0x00,
        0x00, // cmp dword [rsi+0x21c], 0x3000
        0x75, 0x11, // jne fail
        0x81, 0xbe, 0x18, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, // cmp dword [rsi+0x218], 0
        0x74, 0x05, // je fail (the initrd must have an address)
        0xb0, 0x10, 0xe6, 0xf4, // mov al, 0x10; out 0xf4, al
        0xf4, // hlt
        // fail:
        0xb0, 0x11, 0xe6, 0xf4, 0xf4, // mov al, 0x11; out 0xf4, al; hlt
    ]);
    img.extend_from_slice(&k);
    let dir = std::env::temp_dir().join(format!("acrn-bz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (kernel, initrd) = (dir.join("bzImage"), dir.join("initrd"));
    std::fs::write(&kernel, &img).unwrap();
    std::fs::write(&initrd, vec![0x5au8; 0x3000]).unwrap();
    let r = run_guest(&RunConfig {
        payload: Payload::Kernel {
            kernel,
            initrd: Some(initrd),
            cmdline: "console=ttyS0 acrn".into(),
        },
        mem_mib: 64,
        console: Console::Capture,
        timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    })
    .expect("run_guest");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(String::from_utf8_lossy(&r.serial), "console=ttyS0 acrn4");
    assert_eq!(r.end, RunEnd::DebugExit(0x10), "{r:?}");
}
