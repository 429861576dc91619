//! The real-guest PIO latency benchmark (`acrn-hsm bench --guest`): one small real-mode guest,
//! the same bytes for every variant, that times `out`/`in` pairs to a test port with `rdtsc`.
//!
//! The guest ([`guest_code`], position independent, 16-bit):
//! 1. `cli`; DS = SS = 0, SP = 0x7000, ES = 0x1000 (the result buffer at 0x10000);
//! 2. a warm-up of `warmup` `out dx, al` / `in al, dx` pairs to [`TEST_PORT`];
//! 3. `iterations` *empty* iterations: `rdtsc`, the same register moves as a measured
//!    iteration, `rdtsc`; each TSC delta (low 32 bits) stored at ES:DI;
//! 4. `iterations` *measured* iterations: `rdtsc`, `out dx, al`, `in al, dx`, `rdtsc`; each
//!    delta stored after the empty ones;
//! 5. the buffer written byte by byte to [`RESULT_PORT`] (QEMU's `isa-debugcon` port), then
//!    [`EXIT_VALUE`] to the `isa-debug-exit` port [`EXIT_PORT`] and `hlt`.
//!
//! The host reads the dump: `iterations` little-endian u32 empty deltas, then `iterations`
//! measured ones ([`parse_dump`]); one out/in pair costs median(measured) − median(empty).
//!
//! Variants: [`run_native`] (the KVM engine, the port served by a native Rust device in the
//! ioreq client), the TypeScript device (ts/bench/guest.ts, the same VM set-up through the
//! bindings), QEMU/KVM ([`bios_image`] as `-bios`: QEMU answers the unassigned port itself in
//! its vCPU thread) and a plain C KVM loop (benches/c/kvm_floor.c, the same image).

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use acrn_hsm::client::{ClientConfig, Dispatcher, IoreqClient, PollConfig, WakeMode};
use acrn_hsm::devices::FnDevice;
use acrn_hsm::{UserPages, VmConfig};
use acrn_hsm_emulator::kvm;
use acrn_hsm_emulator::{Emulator, Engine};

/// The port the guest times (unused by QEMU's `pc` machine and by `acrn-hsm run`'s platform).
pub const TEST_PORT: u16 = 0x7e0;
/// The port the guest dumps its results to, a byte at a time (QEMU's `isa-debugcon` default).
pub const RESULT_PORT: u16 = 0x402;
/// The `isa-debug-exit` port.
pub const EXIT_PORT: u16 = 0xf4;
/// The value written to [`EXIT_PORT`] at the end (QEMU exits with status `(v << 1) | 1` = 33).
pub const EXIT_VALUE: u8 = 0x10;
/// Guest RAM of the KVM-engine variants at 0 (the result buffer is at 0x10000..0x20000).
pub const RAM_BYTES: usize = 1 << 20;
/// Where [`bios_image`] sits in RAM (F000:0000), as a firmware's shadow copy.
pub const IMAGE_GPA: u64 = 0xf_0000;
/// Where [`bios_image`] is mapped read-only below 4 GiB (its reset vector at 0xFFFF_FFF0).
pub const ROM_GPA: u64 = 0xffff_0000;
/// At most this many iterations (empty and measured deltas fill one 64 KiB segment).
pub const MAX_ITERATIONS: u16 = 8000;

/// The guest's machine code: `warmup` pairs, then `iterations` empty and `iterations` measured
/// iterations (clamped to 1..=[`MAX_ITERATIONS`]; `warmup` to at least 1).
pub fn guest_code(iterations: u16, warmup: u16) -> Vec<u8> {
    let n = iterations.clamp(1, MAX_ITERATIONS).to_le_bytes();
    let w = warmup.max(1).to_le_bytes();
    let port = TEST_PORT.to_le_bytes();
    let res = RESULT_PORT.to_le_bytes();
    let exit = EXIT_PORT.to_le_bytes();
    vec![
        0xfa, // cli
        0xfc, // cld
        0x31, 0xc0, // xor ax, ax
        0x8e, 0xd8, // mov ds, ax
        0x8e, 0xd0, // mov ss, ax
        0xbc, 0x00, 0x70, // mov sp, 0x7000
        0xb8, 0x00, 0x10, // mov ax, 0x1000
        0x8e, 0xc0, // mov es, ax            (results at 0x10000)
        // Warm-up.
        0xb9, w[0], w[1], // mov cx, warmup
        0xba, port[0], port[1], // mov dx, TEST_PORT
        // warm:
        0xee, // out dx, al
        0xec, // in al, dx
        0xe2, 0xfc, // loop warm            (-4)
        // Empty iterations: what a measured one does, without the out/in.
        0x31, 0xff, // xor di, di
        0xb9, n[0], n[1], // mov cx, iterations
        // empty:
        0x0f, 0x31, // rdtsc
        0x66, 0x89, 0xc6, // mov esi, eax
        0xba, port[0], port[1], // mov dx, TEST_PORT
        0x0f, 0x31, // rdtsc
        0x66, 0x29, 0xf0, // sub eax, esi
        0x66, 0xab, // stosd                (es:[di] = eax, di += 4)
        0xe2, 0xef, // loop empty           (-17)
        // Measured iterations.
        0xb9, n[0], n[1], // mov cx, iterations
        // pio:
        0x0f, 0x31, // rdtsc
        0x66, 0x89, 0xc6, // mov esi, eax
        0xba, port[0], port[1], // mov dx, TEST_PORT
        0xee,    // out dx, al
        0xec,    // in al, dx
        0x0f, 0x31, // rdtsc
        0x66, 0x29, 0xf0, // sub eax, esi
        0x66, 0xab, // stosd
        0xe2, 0xed, // loop pio             (-19)
        // Dump es:[0..di) to RESULT_PORT.
        0x89, 0xf9, // mov cx, di
        0x31, 0xf6, // xor si, si
        0xba, res[0], res[1], // mov dx, RESULT_PORT
        // dump:
        0x26, 0xac, // lodsb al, es:[si]
        0xee, // out dx, al
        0xe2, 0xfb, // loop dump            (-5)
        // Exit.
        0xba, exit[0], exit[1], // mov dx, EXIT_PORT
        0xb0, EXIT_VALUE, // mov al, EXIT_VALUE
        0xee,       // out dx, al
        // halt:
        0xf4, // hlt
        0xeb, 0xfd, // jmp halt
    ]
}

/// A 64 KiB flat firmware image for QEMU's `-bios` and benches/c/kvm_floor.c: `code` at offset
/// 0 (F000:0000, physical 0xF0000) and, at the reset vector (offset 0xFFF0), `jmp F000:0000`.
pub fn bios_image(code: &[u8]) -> Vec<u8> {
    let mut img = vec![0xf4u8; 0x1_0000]; // hlt everywhere else
    let n = code.len().min(0xfff0);
    img[..n].copy_from_slice(&code[..n]);
    img[0xfff0..0xfff5].copy_from_slice(&[0xea, 0x00, 0x00, 0x00, 0xf0]); // jmp far F000:0000
    img
}

/// QEMU's CPU model for the reference runs: `max` without `arch-capabilities`. On these nested
/// KVMs QEMU 7.2 aborts setting MSR 0x10a (IA32_ARCH_CAPABILITIES) with `-cpu host`, and with
/// `-cpu max` too on an AMD EPYC host (`kvm_buf_set_msrs` assertion); the default model warns
/// that `pni` is missing. The guests only need `rdtsc`.
pub const QEMU_CPU: &str = "max,-arch-capabilities";

/// QEMU's command line (after the program) for the guest in `image` (a [`bios_image`]),
/// results to `dump`: KVM, the `pc` machine with no default devices, [`QEMU_CPU`],
/// `isa-debug-exit` at [`EXIT_PORT`] and
/// `isa-debugcon` at [`RESULT_PORT`] into `dump`. [`TEST_PORT`] is left unassigned: QEMU
/// answers it (reads all ones, writes ignored) in the vCPU thread.
pub fn qemu_args(image: &std::path::Path, dump: &std::path::Path) -> Vec<String> {
    [
        "-accel",
        "kvm",
        "-M",
        "pc",
        "-cpu",
        QEMU_CPU,
        "-m",
        "16",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-bios",
        &image.display().to_string(),
        "-device",
        &format!("isa-debug-exit,iobase={EXIT_PORT:#x},iosize=1"),
        "-chardev",
        &format!("file,id=guestpio,path={}", dump.display()),
        "-device",
        &format!("isa-debugcon,iobase={RESULT_PORT:#x},chardev=guestpio"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The two series of a run, in TSC cycles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestDeltas {
    /// The empty iterations.
    pub empty: Vec<u32>,
    /// The measured (out + in) iterations.
    pub pio: Vec<u32>,
}

/// Splits a result dump of `iterations` iterations; `None` when it is not 8 × iterations bytes.
pub fn parse_dump(dump: &[u8], iterations: u16) -> Option<GuestDeltas> {
    let n = usize::from(iterations.clamp(1, MAX_ITERATIONS));
    if dump.len() != 8 * n {
        return None;
    }
    let words: Vec<u32> = dump
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some(GuestDeltas {
        empty: words[..n].to_vec(),
        pio: words[n..].to_vec(),
    })
}

/// The TSC's rate, measured against CLOCK_MONOTONIC over about `ms` milliseconds.
pub fn tsc_hz(ms: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let t0 = Instant::now();
        // SAFETY: rdtsc has no preconditions on x86-64.
        let c0 = unsafe { std::arch::x86_64::_rdtsc() };
        while t0.elapsed() < Duration::from_millis(ms.max(1)) {
            std::hint::spin_loop();
        }
        // SAFETY: as above.
        let c1 = unsafe { std::arch::x86_64::_rdtsc() };
        let secs = t0.elapsed().as_secs_f64();
        c1.wrapping_sub(c0) as f64 / secs
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = ms;
        0.0
    }
}

/// What a run on the KVM engine returned.
#[derive(Debug, Clone)]
pub struct NativeRun {
    /// Everything the guest wrote to [`RESULT_PORT`].
    pub dump: Vec<u8>,
    /// Requests the test-port device served (warm-up included).
    pub served: u64,
    /// Wall time from START_VM to the debug exit.
    pub elapsed: Duration,
}

/// How the client of [`run_native`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestWait {
    /// Notify: a notification VM, the client sleeping in ATTACH.
    Notify,
    /// Polling VM and client with the library's back-off ([`WakeMode::poll`], as `acrn-hsm run`
    /// and a TypeScript client on `client.run()` have).
    Poll,
    /// Polling VM, a client that spins without ever yielding or sleeping.
    PollSpin,
}

/// Runs the guest on the KVM engine with [`TEST_PORT`] served by a native Rust device of the
/// ioreq client. Fails when KVM is unusable or the guest does not reach its debug exit within
/// `timeout`.
pub fn run_native(
    iterations: u16,
    warmup: u16,
    wait: GuestWait,
    timeout: Duration,
) -> Result<NativeRun, String> {
    let polling = wait != GuestWait::Notify;
    let probe = kvm::probe();
    if !probe.usable {
        return Err(format!("the KVM engine cannot run here: {}", probe.reason));
    }
    let emu = Emulator::new();
    emu.set_engine(Engine::Kvm);
    let hsm = emu.open_hsm();
    let vm = Arc::new(
        hsm.create_vm(&VmConfig {
            vcpu_num: 1,
            vm_flag: if polling {
                acrn_hsm::GUEST_FLAG_IO_COMPLETION_POLLING
            } else {
                0
            },
            ..Default::default()
        })
        .map_err(|e| e.to_string())?,
    );
    // As a firmware: RAM at 0 with the image's shadow at 0xF0000, the image read-only below
    // 4 GiB; no registers set, so the vCPU starts at the reset vector (F000:FFF0).
    let image = bios_image(&guest_code(iterations, warmup));
    let ram = Arc::new(UserPages::new(RAM_BYTES).map_err(|e| e.to_string())?);
    ram.write_bytes(IMAGE_GPA as usize, &image)
        .map_err(|e| e.to_string())?;
    vm.map_ram(0, ram.clone(), 0x7).map_err(|e| e.to_string())?;
    let rom = Arc::new(UserPages::new(image.len()).map_err(|e| e.to_string())?);
    rom.write_bytes(0, &image).map_err(|e| e.to_string())?;
    vm.map_ram(ROM_GPA, rom.clone(), 0x5)
        .map_err(|e| e.to_string())?;

    let served = Arc::new(Mutex::new(0u64));
    let dump: Arc<Mutex<Vec<u8>>> = Arc::default();
    let (tx, rx) = mpsc::channel::<()>();
    let mut d = Dispatcher::new();
    let (s1, s2) = (served.clone(), served.clone());
    d.add_pio(
        TEST_PORT,
        1,
        Box::new(FnDevice::new(
            "guest-pio",
            move |_, _| {
                *s1.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                0x5a
            },
            move |_, _, _| *s2.lock().unwrap_or_else(|e| e.into_inner()) += 1,
        )),
    )
    .map_err(|e| e.to_string())?;
    let dd = dump.clone();
    d.add_pio(
        RESULT_PORT,
        1,
        Box::new(FnDevice::new(
            "result",
            |_, _| 0xe9,
            move |_, _, v| dd.lock().unwrap_or_else(|e| e.into_inner()).push(v as u8),
        )),
    )
    .map_err(|e| e.to_string())?;
    d.add_pio(
        EXIT_PORT,
        1,
        Box::new(FnDevice::new(
            "debug-exit",
            |_, _| 0,
            move |_, _, _| {
                let _ = tx.send(());
            },
        )),
    )
    .map_err(|e| e.to_string())?;
    let mut client = IoreqClient::new(
        vm.clone(),
        d,
        ClientConfig {
            mode: match wait {
                GuestWait::Notify => WakeMode::Blocking,
                GuestWait::Poll => WakeMode::poll(),
                GuestWait::PollSpin => WakeMode::Poll(PollConfig {
                    spins: u32::MAX,
                    yields: 0,
                    ..PollConfig::default()
                }),
            },
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let handle = client.handle();
    let thread = std::thread::Builder::new()
        .name("guest-pio-client".into())
        .spawn(move || client.run().map(|_| ()).map_err(|e| e.to_string()))
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let started = vm.start().map_err(|e| {
        format!(
            "START_VM: {e}: {}",
            emu.kvm_error(vm.vmid()).unwrap_or_default()
        )
    });
    let outcome = started.and_then(|()| {
        rx.recv_timeout(timeout).map_err(|_| {
            format!(
                "the guest did not finish in {timeout:?}: exits {:?}, stats {:?}",
                emu.guest_exits(vm.vmid()),
                emu.kvm_stats(vm.vmid())
            )
        })
    });
    let elapsed = t0.elapsed();
    // Let the exit's request complete before PAUSE (the guest then halts).
    for _ in 0..200 {
        if emu
            .kvm_stats(vm.vmid())
            .is_some_and(|s| s.completed >= s.issued)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The DM's order: pause, clear the requests, stop serving, destroy.
    let _ = vm.pause();
    let _ = vm.clear_vm_ioreq();
    handle.stop();
    let _ = vm.destroy_ioreq_client();
    let client_result = thread
        .join()
        .map_err(|_| "the ioreq client thread panicked".to_string())?;
    let _ = vm.destroy();
    outcome?;
    client_result?;
    let served = *served.lock().unwrap_or_else(|e| e.into_inner());
    let dump = dump.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(NativeRun {
        dump,
        served,
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_jump_to_their_heads() {
        let c = guest_code(10, 5);
        // Every `loop rel8` (0xe2) lands on an instruction of this program: check by the known
        // offsets of the loop heads.
        let loops: Vec<usize> = c
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[0] == 0xe2)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(loops.len(), 4);
        let target = |i: usize| (i as isize + 2 + c[i + 1] as i8 as isize) as usize;
        assert_eq!(&c[target(loops[0])..target(loops[0]) + 2], &[0xee, 0xec]);
        assert_eq!(&c[target(loops[1])..target(loops[1]) + 2], &[0x0f, 0x31]);
        assert_eq!(&c[target(loops[2])..target(loops[2]) + 2], &[0x0f, 0x31]);
        assert_eq!(&c[target(loops[3])..target(loops[3]) + 2], &[0x26, 0xac]);
        let img = bios_image(&c);
        assert_eq!(img.len(), 65536);
        assert_eq!(&img[..c.len()], &c[..]);
        assert_eq!(img[0xfff0], 0xea);
    }

    #[test]
    fn dump_parses() {
        let mut d = Vec::new();
        for v in [1u32, 2, 30, 40] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        let g = parse_dump(&d, 2).unwrap();
        assert_eq!(g.empty, vec![1, 2]);
        assert_eq!(g.pio, vec![30, 40]);
        assert_eq!(parse_dump(&d, 3), None);
    }
}
