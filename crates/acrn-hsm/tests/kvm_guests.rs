//! Real guest code on the KVM engine: small guests assembled here (machine code bytes, every
//! instruction commented), run behind the ACRN ABI; every exit must become exactly one I/O
//! request served by the ioreq client, with the values the guest expects. Skipped (with a
#![allow(clippy::unwrap_used)]

//! printed reason) where `/dev/kvm` is missing or unusable.

use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use acrn_hsm::emulator::kvm;
use acrn_hsm::*;

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
    let emu = Emulator::new();
    emu.set_engine(Engine::Kvm);
    let hsm = Hsm::emulated(&emu);
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
    ram.write_bytes(0x1000, code).expect("code");
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
        let stats = self.emu.kvm_stats(self.vm.vmid()).expect("stats");
        self.handle.stop();
        self.vm.destroy_ioreq_client().ok();
        let cs = self.client.take().expect("client").join().expect("client");
        self.vm.destroy().expect("destroy");
        (stats, cs)
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
        },
    );
    assert_eq!(m.wait_done(60), 7);
    m.settle(log.lock().unwrap().len() as u64);
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
    let body = &log[12..log.len() - 1];
    assert_eq!(body.len(), 1000);
    for (i, pair) in body.chunks(2).enumerate() {
        // AL is 0x89's low byte... then the value read from 0x8b.
        let al = if i == 0 { 0xef } else { 0x77 };
        assert_eq!(pair[0], ('p', 0x8a, 1, true, al), "iteration {i}");
        assert_eq!(pair[1], ('p', 0x8b, 1, false, 0x77), "iteration {i}");
    }
    assert_eq!(*log.last().unwrap(), ('p', 0xf4, 1, true, 7));
    let n = log.len() as u64;
    assert_eq!(ks.issued, n, "every exit issued once");
    assert_eq!(ks.completed, n, "every exit completed once");
    assert_eq!(ks.exits, n);
    assert_eq!(ks.faults, 0);
    assert_eq!(cs.handled(), n, "the client handled each request once");
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
