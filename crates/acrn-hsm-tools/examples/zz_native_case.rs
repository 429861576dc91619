use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use acrn_hsm::client::{PageSlots, protocol, Kind};
use acrn_hsm::{GUEST_FLAG_IO_COMPLETION_POLLING, VmConfig};
use acrn_hsm_emulator::Emulator;
use acrn_hsm_tools::bench::{NativeCase, run_native_case, bench_workload, BENCH_CONST_VALUE};

fn minimal(rounds: u64) -> u64 {
    let pad: usize = std::env::var("PAD").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let _junk: Vec<Vec<u8>> = (0..pad).map(|i| vec![1u8; 16 + (i % 7) * 16]).collect();
    let emu = Emulator::new();
    let hsm = emu.open_hsm();
    let vm = Arc::new(hsm.create_vm(&VmConfig { vcpu_num: 1, vm_flag: GUEST_FLAG_IO_COMPLETION_POLLING, ..Default::default() }).unwrap());
    vm.create_ioreq_client().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (v2, s2) = (vm.clone(), stop.clone());
    let pin: Option<usize> = std::env::var("PIN").ok().and_then(|v| v.parse().ok());
    if let Some(c) = pin { unsafe { let mut set: libc::cpu_set_t = std::mem::zeroed(); libc::CPU_SET(1 - c, &mut set); libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set); } }
    let t = std::thread::spawn(move || {
        if let Some(c) = pin { unsafe { let mut set: libc::cpu_set_t = std::mem::zeroed(); libc::CPU_SET(c, &mut set); libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set); } }
        let mem = PageSlots::new(v2.ioreq_page().clone());
        let mut regs = [0u64; 64];
        while !s2.load(Ordering::Acquire) {
            if let Some(c) = protocol::claim(&mem, 0) {
                let r = *c.request();
                let v = match r.kind { Kind::Mmio => { let i = ((r.address - 0xfed0_0000) / 8) as usize; if r.is_read { regs[i] } else { regs[i] = r.value; 0 } } _ => u64::from(BENCH_CONST_VALUE) };
                if r.is_read { protocol::respond(&mem, &c, v); }
                let vcpu = protocol::release_for_notify(c);
                v2.notify_request_finish(u32::from(vcpu)).unwrap();
            } else { std::hint::spin_loop(); }
        }
    });
    vm.start().unwrap();
    let guest = emu.guest(vm.vmid()).unwrap();
    guest.run(&bench_workload(1, 2000)).unwrap();
    let r = guest.run(&bench_workload(1, rounds)).unwrap();
    stop.store(true, Ordering::Release);
    t.join().unwrap();
    let _ = vm.pause();
    let mut l = r.latencies_ns.clone(); l.sort();
    assert!(r.mismatches.is_empty());
    l[l.len()/2]
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let rounds: u32 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(100000);
    let reps: u32 = std::env::args().nth(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    for _ in 0..reps {
        if which == "min" { println!("minimal p50 {}", minimal(rounds.into())); continue; }
        let m = run_native_case(&NativeCase { vcpus: 1, poll: true, rounds, warmup_rounds: 2000, chunk_rounds: 0, max_seconds: 0.0, poll_backoff: false }).unwrap();
        let mut l = m.latencies.clone(); l.sort();
        println!("native p50 {} n {}", l[l.len()/2], l.len());
    }
}
