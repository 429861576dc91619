//! The emulator's ioctl argument parsing under random input, through the raw
//! `HsmBackend::ioctl`: random request numbers (known ones, known ones with their size or
//! direction bits changed, and arbitrary 32-bit words), random argument kinds (none, a value, a
//! user address, bytes of the right or a wrong length) and random argument bytes, patched now and
//! then into something plausible (a real ioreq page, a real RAM allocation) so that sequences get
//! past CREATE_VM into the deeper commands.
//!
//! For every call: no panic; no hang (every call returns within a bound; ATTACH_IOREQ_CLIENT,
//! which blocks by design, runs on a helper thread that the test releases with
//! DESTROY_IOREQ_CLIENT, as a device model does); the result is a non-negative value or an errno
//! the HSM driver can return (below). A fresh handle answers EINVAL to everything but CREATE_VM.
//! After each random sequence the same emulator still creates a VM and serves a workload cleanly.
//!
//! `cargo test -p acrn-hsm --test reliability_ioctl_fuzz` runs a fixed budget (a few seconds).
//! Longer: `ACRN_FUZZ_SECS=300 cargo test --release -p acrn-hsm --test reliability_ioctl_fuzz
//! -- --nocapture` (optional `ACRN_FUZZ_SEED=<n>`); the number of calls and a histogram of
//! results are printed.
#![allow(clippy::unwrap_used)] // tests/common uses unwrap
mod common;

use prop_harness::{Budget, Rng};
use std::collections::BTreeMap;
use std::mem::offset_of;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use acrn_hsm::client::{ClientConfig, Dispatcher, IoreqClient};
use acrn_hsm::devices::RegisterFile;
use acrn_uapi::bindings::{acrn_msi_entry, acrn_vm_creation, acrn_vm_memmap};
use acrn_uapi::layout::IOCTLS;
use common::*;

/// What `drivers/virt/acrn` can answer: its own checks (EINVAL, EFAULT, ENOTTY, EEXIST, ENODEV,
/// ENOMEM, EBUSY), fd lookups (EBADF), pinning (EFAULT, ENOMEM) and the hypervisor's -1 (EPERM)
/// and other negative codes (ENOENT, ENOSPC).
const KERNEL_ERRNOS: &[Errno] = &[
    Errno::EPERM,
    Errno::ENOENT,
    Errno::EBADF,
    Errno::ENOMEM,
    Errno::EFAULT,
    Errno::EBUSY,
    Errno::EEXIST,
    Errno::ENODEV,
    Errno::EINVAL,
    Errno::ENOTTY,
    Errno::ENOSPC,
];

/// One call may take this long at most (CLEAR_VM_IOREQ may wait up to ~100 ms by design).
const CALL_BOUND: Duration = Duration::from_secs(2);

fn seed() -> u64 {
    prop_harness::seed(0x10c7_1f22)
}

fn ioc_size(request: u32) -> usize {
    ((request >> 16) & 0x3fff) as usize
}

fn known(rng: &mut Rng) -> u32 {
    IOCTLS[rng.below(IOCTLS.len() as u64) as usize].1
}

fn random_request(rng: &mut Rng) -> u32 {
    match rng.below(10) {
        0 => rng.next() as u32,
        // A known command with its size field changed.
        1 => (known(rng) & !(0x3fff << 16)) | ((rng.below(0x4000) as u32) << 16),
        // A known command with its direction bits changed.
        2 => (known(rng) & !(3 << 30)) | ((rng.below(4) as u32) << 30),
        // The ACRN type with a random number.
        3 => (known(rng) & !0xff) | rng.below(256) as u32,
        _ => known(rng),
    }
}

fn name_of(request: u32) -> String {
    IOCTLS
        .iter()
        .find(|(_, v)| *v == request)
        .map_or_else(|| format!("{request:#010x}"), |(n, _)| (*n).to_string())
}

/// Memory a plausible argument may point at: an ioreq page and some RAM.
struct Arena {
    page: Arc<UserPages>,
    page2: Arc<UserPages>,
    ram: Arc<UserPages>,
}

impl Arena {
    fn new() -> Arena {
        Arena {
            page: Arc::new(UserPages::new(PAGE_SIZE).expect("page")),
            page2: Arc::new(UserPages::new(PAGE_SIZE).expect("page")),
            ram: Arc::new(UserPages::new(16 * PAGE_SIZE).expect("ram")),
        }
    }
    fn address(&self, rng: &mut Rng) -> u64 {
        match rng.below(7) {
            0 => self.page.addr(),
            6 => self.page2.addr(),
            1 => self.ram.addr() + PAGE_SIZE as u64 * rng.below(16),
            2 => self.page.addr() + rng.below(PAGE_SIZE as u64),
            3 => 0,
            _ => rng.next(),
        }
    }
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if b.len() >= off + v.len() {
        b[off..off + v.len()].copy_from_slice(v);
    }
}

/// Random bytes, made plausible now and then for the commands whose arguments hold addresses.
fn random_bytes(rng: &mut Rng, request: u32, len: usize, arena: &Arena) -> Vec<u8> {
    let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    if rng.below(3) == 0 {
        return b;
    }
    if request == acrn_uapi::ioctl::ACRN_IOCTL_CREATE_VM {
        b.iter_mut().for_each(|x| *x = 0);
        put(
            &mut b,
            offset_of!(acrn_vm_creation, vcpu_num),
            &(rng.below(18) as u16).to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(acrn_vm_creation, ioreq_buf),
            &arena.address(rng).to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(acrn_vm_creation, cpu_affinity),
            &(rng.next() & 0xffff).to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(acrn_vm_creation, vm_flag),
            &(rng.next() & 0xff).to_le_bytes(),
        );
    } else if request == acrn_uapi::ioctl::ACRN_IOCTL_SET_MEMSEG
        || request == acrn_uapi::ioctl::ACRN_IOCTL_UNSET_MEMSEG
    {
        put(
            &mut b,
            offset_of!(acrn_vm_memmap, type_),
            &(rng.below(3) as u32).to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(acrn_vm_memmap, addr),
            &arena.address(rng).to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(acrn_vm_memmap, len),
            &(PAGE_SIZE as u64 * rng.below(20)).to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(acrn_vm_memmap, user_vm_pa),
            &((rng.below(64) << 12) * rng.below(2)).to_le_bytes(),
        );
    } else if request == acrn_uapi::ioctl::ACRN_IOCTL_INJECT_MSI {
        // The hypervisor takes only an address in the LAPIC window (0xFEExxxxx).
        put(
            &mut b,
            offset_of!(acrn_msi_entry, msi_addr),
            &(0xfee0_0000u64 | (rng.below(16) << 12)).to_le_bytes(),
        );
    } else if request == acrn_uapi::ioctl::ACRN_IOCTL_SET_VCPU_REGS {
        // Reserved fields zero and a CR0 the hypervisor accepts (NE is fixed to 1).
        b.iter_mut().for_each(|x| *x = 0);
        put(&mut b, 0, &(rng.below(3) as u16).to_le_bytes());
        put(&mut b, 8 + 176, &0x30u64.to_le_bytes());
        put(&mut b, 8 + 160, &rng.next().to_le_bytes());
    } else if rng.below(2) == 0 {
        // Reserved fields zero, small values: get past the first checks of the others.
        for (i, x) in b.iter_mut().enumerate() {
            if i % 8 >= 2 {
                *x = 0;
            }
        }
    }
    b
}

#[derive(Default)]
struct Tally {
    calls: u64,
    results: BTreeMap<String, u64>,
}

impl Tally {
    fn check(
        &mut self,
        request: u32,
        r: std::result::Result<i64, Errno>,
        took: Duration,
        ctx: &str,
    ) {
        self.calls += 1;
        assert!(
            took < CALL_BOUND,
            "{} took {took:?}: {ctx}",
            name_of(request)
        );
        let key = match r {
            Ok(v) => {
                assert!(v >= 0, "{}: {v}: {ctx}", name_of(request));
                "ok".to_string()
            }
            Err(e) => {
                assert!(
                    KERNEL_ERRNOS.contains(&e),
                    "{} answered {e:?}, not an errno the driver returns: {ctx}",
                    name_of(request)
                );
                e.name().to_string()
            }
        };
        *self.results.entry(key).or_default() += 1;
    }
}

/// One random call on `hsm`.
fn random_call(rng: &mut Rng, hsm: &Arc<EmulatedHsm>, arena: &Arena, tally: &mut Tally, ctx: &str) {
    let request = random_request(rng);
    let size = ioc_size(request);
    let choice = rng.below(10);
    let mut bytes = match choice {
        0 => vec![0u8; rng.below(64) as usize],
        1..=7 => random_bytes(rng, request, size, arena),
        _ => Vec::new(),
    };
    let value = if rng.below(2) == 0 {
        arena.address(rng)
    } else {
        rng.next()
    };
    let ctx = format!("{ctx}, request {}, choice {choice}", name_of(request));
    if request == acrn_uapi::ioctl::ACRN_IOCTL_ATTACH_IOREQ_CLIENT {
        // Blocks until a request is pending or the client is destroyed: released the DM's way.
        let h = hsm.clone();
        let (tx, rx) = mpsc::channel();
        let t = std::thread::spawn(move || {
            let t0 = Instant::now();
            let r = h.ioctl(request, IoctlArg::None);
            let _ = tx.send((r, t0.elapsed()));
        });
        let destroy = acrn_uapi::ioctl::ACRN_IOCTL_DESTROY_IOREQ_CLIENT;
        let t0 = Instant::now();
        let d = hsm.ioctl(destroy, IoctlArg::None);
        tally.check(destroy, d, t0.elapsed(), &ctx);
        let (r, _) = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("ATTACH not released by DESTROY_IOREQ_CLIENT: {ctx}"));
        t.join().expect("attach thread");
        assert!(
            matches!(r, Ok(0) | Err(Errno::ENODEV) | Err(Errno::EINVAL)),
            "{r:?}: {ctx}"
        );
        tally.check(request, r, Duration::ZERO, &ctx);
        return;
    }
    let t0 = Instant::now();
    let r = match choice {
        0..=7 => hsm.ioctl(request, IoctlArg::Bytes(&mut bytes)),
        8 => hsm.ioctl(request, IoctlArg::Value(value)),
        _ => hsm.ioctl(request, IoctlArg::None),
    };
    tally.check(request, r, t0.elapsed(), &ctx);
}

#[test]
fn a_fresh_handle_answers_einval_to_all_but_create_vm() {
    let seed = seed();
    let mut rng = Rng(seed);
    let emu = Emulator::new();
    let arena = Arena::new();
    let mut budget = Budget::new(20_000, 1);
    while budget.more() {
        let hsm = emu.open();
        let request = if rng.below(2) == 0 {
            known(&mut rng)
        } else {
            rng.next() as u32
        };
        let size = ioc_size(request);
        let mut bytes = random_bytes(&mut rng, request, size, &arena);
        let r = match rng.below(3) {
            0 => hsm.ioctl(request, IoctlArg::Bytes(&mut bytes)),
            1 => hsm.ioctl(request, IoctlArg::Value(rng.next())),
            _ => hsm.ioctl(request, IoctlArg::None),
        };
        if request == acrn_uapi::ioctl::ACRN_IOCTL_CREATE_VM {
            assert!(
                r.is_ok() || KERNEL_ERRNOS.contains(&r.unwrap_err()),
                "{r:?}"
            );
        } else {
            assert_eq!(
                r,
                Err(Errno::EINVAL),
                "seed {seed} case {}: {}",
                budget.done(),
                name_of(request)
            );
        }
    }
    println!("fresh handles: {} calls, seed {seed}", budget.done());
}

#[test]
fn random_ioctl_sequences_never_panic_hang_or_invent_errnos() {
    let seed = seed() ^ 0x5e9;
    let mut rng = Rng(seed);
    let mut budget = Budget::new(300, 1);
    let mut tally = Tally::default();
    let mut vms_created = 0u64;
    while budget.more() {
        let case = budget.done();
        let emu = Emulator::with_config(EmulatorConfig {
            pcpu_num: 16,
            max_vms: 4,
            ..EmulatorConfig::default()
        });
        let arena = Arena::new();
        // Two files on the machine, as two device models would hold.
        let files = [Arc::new(emu.open()), Arc::new(emu.open())];
        // Most sequences start from a VM created properly, to explore the commands after it.
        for (k, f) in files.iter().enumerate() {
            if rng.below(3) != 0 {
                let page = if k == 0 { &arena.page } else { &arena.page2 };
                let mut b = vec![0u8; size_of::<acrn_vm_creation>()];
                let vcpus = 1 + rng.below(4) as u16;
                put(
                    &mut b,
                    offset_of!(acrn_vm_creation, vcpu_num),
                    &vcpus.to_le_bytes(),
                );
                put(
                    &mut b,
                    offset_of!(acrn_vm_creation, cpu_affinity),
                    &((1u64 << vcpus) - 1).to_le_bytes(),
                );
                // The VM's name must be unique on the machine.
                put(
                    &mut b,
                    offset_of!(acrn_vm_creation, uuid),
                    &[b'f', b'u', b'z', b'z', k as u8 + 1],
                );
                put(
                    &mut b,
                    offset_of!(acrn_vm_creation, ioreq_buf),
                    &page.addr().to_le_bytes(),
                );
                let r = f.ioctl(
                    acrn_uapi::ioctl::ACRN_IOCTL_CREATE_VM,
                    IoctlArg::Bytes(&mut b),
                );
                assert!(r.is_ok(), "seed {seed} case {case}: {r:?}");
            }
        }
        let calls = 10 + rng.below(50);
        for i in 0..calls {
            let f = &files[rng.below(2) as usize];
            random_call(
                &mut rng,
                f,
                &arena,
                &mut tally,
                &format!("seed {seed} case {case} call {i}"),
            );
        }
        vms_created += emu.vms().len() as u64;
        drop(files);
        // The machine still works: a VM created properly serves a workload exactly once.
        if case % 10 == 0 {
            let hsm = emu.open_hsm();
            let vm = match hsm.create_vm(&VmConfig {
                vcpu_num: 2,
                ..Default::default()
            }) {
                Ok(vm) => Arc::new(vm),
                // Every slot orphaned by a random sequence (a running VM whose file closed).
                Err(e) if e.errno == Errno::ENOSPC || e.errno == Errno::EPERM => continue,
                // The hypervisor hands out the lowest slot whose name is empty
                // (get_unused_vmid); a failed create erases its target slot's name even when
                // that slot's VM lives (hcall_create_vm). So with no empty-named slot, or a
                // live VM in the first one, no new VM can be created: EINVAL, as on ACRN.
                Err(e)
                    if e.errno == Errno::EINVAL
                        && (1..=4u16)
                            .find(|&i| emu.slot_name(i) == Some([0; 16]))
                            .is_none_or(|i| {
                                emu.vm_state(i).is_some_and(|s| s != VmState::PoweredOff)
                            }) =>
                {
                    continue;
                }
                Err(e) => panic!("seed {seed} case {case}: create_vm after fuzzing: {e}"),
            };
            let mut d = Dispatcher::new();
            d.add_mmio(0x1000_0000, 0x100, Box::new(RegisterFile::new(0x100)))
                .expect("range");
            let mut client =
                IoreqClient::new(vm.clone(), d, ClientConfig::default()).expect("client");
            let h = client.handle();
            let t = std::thread::spawn(move || client.run());
            vm.start().expect("start");
            let w = Workload::from_json(
                r#"{"vcpus": [[{"repeat": 50, "ops": [
                    {"mmio": "0x10000000", "size": 4, "write": 7},
                    {"mmio": "0x10000000", "size": 4, "read": true, "expect": 7}]}]]}"#,
            )
            .expect("workload");
            let r = hsm.guest(&vm).expect("guest").run(&w).expect("run");
            h.stop();
            t.join().expect("client").expect("client run");
            assert!(r.is_clean(), "seed {seed} case {case}: {r:?}");
            assert_eq!(h.stats().notifies, 100);
        }
    }
    println!(
        "ioctl sequences: {} cases, {} calls, {vms_created} VMs alive at the end of a case, seed {seed}: {:?}",
        budget.done(),
        tally.calls,
        tally.results
    );
    // The generator must get past the first checks, not only collect EINVAL.
    assert!(tally.results.get("ok").copied().unwrap_or(0) * 10 > tally.calls);
    assert!(vms_created > 0, "random CREATE_VMs succeed sometimes");
}
