//! The native path of `acrn-hsm bench`: the Rust ioreq client ([`IoreqClient`]) with native
//! devices, against the emulator's guest. The bindings run it on a worker thread and hand the
//! guest's latencies to JavaScript once per case.
//!
//! The workload is the C reference client's (`benches/c/reference_client.c`), so that the two are
//! comparable request for request: per vCPU, `repeat k × [MMIO write of its 8-byte register,
//! MMIO read of it expecting the value, PIO read of a constant port]`.

use std::sync::Arc;
use std::time::Instant;

use acrn_hsm::client::{ClientConfig, Dispatcher, IoreqClient, PollConfig, WakeMode};
use acrn_hsm::devices::RegisterFile;
use acrn_hsm::{Errno, GUEST_FLAG_IO_COMPLETION_POLLING, VmConfig};
use acrn_hsm_emulator::{Access, Emulator, Op, RunResult, Workload};

/// Base of the benchmark's register file (64 registers of 8 bytes), as in the C reference.
pub const BENCH_REGFILE_BASE: u64 = 0xfed0_0000;
/// The constant port.
pub const BENCH_CONST_PORT: u16 = 0x510;
/// What the constant port reads.
pub const BENCH_CONST_VALUE: u32 = 0x5a5a_1234;
/// vCPU `i` writes `BENCH_VALUE_BASE + i` to its register.
pub const BENCH_VALUE_BASE: u64 = 0x1122_3344_5566_7700;

/// One native benchmark case.
#[derive(Debug, Clone, Default)]
pub struct NativeCase {
    /// vCPUs (1 to 16).
    pub vcpus: u16,
    /// Polling VM and busy-poll client (else a notification VM and an ATTACH client).
    pub poll: bool,
    /// Rounds of 3 requests per vCPU in the measured part.
    pub rounds: u32,
    /// Rounds per vCPU of the discarded warm-up run (0: none).
    pub warmup_rounds: u32,
    /// Rounds per vCPU per guest run: the measured part is split into runs of this many rounds,
    /// and stops early once `max_seconds` have passed (0: one run of `rounds`).
    pub chunk_rounds: u32,
    /// Upper bound on the measured part's wall time, in seconds (0: none).
    pub max_seconds: f64,
    /// Poll mode: `true` keeps the library's default back-off ([`PollConfig::default`]);
    /// `false` spins without ever sleeping, as the C reference client's busy loop does.
    pub poll_backoff: bool,
}

/// A benchmark failure: what failed, with the errno where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct BenchError {
    /// What failed.
    pub what: String,
    /// The errno of a failed ioctl or guest run.
    pub errno: Option<Errno>,
}

impl From<acrn_hsm::Error> for BenchError {
    fn from(e: acrn_hsm::Error) -> Self {
        BenchError {
            what: e.to_string(),
            errno: Some(e.errno),
        }
    }
}

fn bench_error(what: impl Into<String>) -> BenchError {
    BenchError {
        what: what.into(),
        errno: None,
    }
}

/// A native case's figures.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Requests issued by the measured runs.
    pub issued: u64,
    /// Requests completed.
    pub completed: u64,
    /// Reads that returned another value than expected, plus guest faults.
    pub errors: u64,
    /// Wall time of the measured guest runs, seconds.
    pub seconds: f64,
    /// PENDING to FREE per completed request, ns.
    pub latencies: Vec<u64>,
    /// NOTIFYs the client issued for the measured runs (should equal `completed`).
    pub notifies: u64,
}

/// The benchmark's guest workload: `rounds` rounds per vCPU.
pub fn bench_workload(vcpus: u16, rounds: u64) -> Workload {
    let vcpus = (0..vcpus)
        .map(|v| {
            let reg = BENCH_REGFILE_BASE + 8 * u64::from(v);
            let val = BENCH_VALUE_BASE + u64::from(v);
            vec![Op::Repeat {
                count: rounds,
                ops: vec![
                    Op::Mmio {
                        address: reg,
                        size: 8,
                        access: Access::Write(val),
                    },
                    Op::Mmio {
                        address: reg,
                        size: 8,
                        access: Access::Read { expect: Some(val) },
                    },
                    Op::Pio {
                        port: BENCH_CONST_PORT,
                        size: 4,
                        access: Access::Read {
                            expect: Some(u64::from(BENCH_CONST_VALUE)),
                        },
                    },
                ],
            }]
        })
        .collect();
    Workload { vcpus }
}

/// Runs one case of the native path (Rust client, native register file) on a fresh emulator.
pub fn run_native_case(o: &NativeCase) -> Result<Measured, BenchError> {
    let (vcpus, poll) = (o.vcpus, o.poll);
    let emu = Emulator::new();
    let hsm = emu.open_hsm();
    let vm = Arc::new(hsm.create_vm(&VmConfig {
        vcpu_num: vcpus,
        vm_flag: if poll {
            GUEST_FLAG_IO_COMPLETION_POLLING
        } else {
            0
        },
        ..Default::default()
    })?);
    let bus_err = |e: acrn_hsm::client::BusError| bench_error(e.to_string());
    let mut d = Dispatcher::new();
    d.add_mmio(
        BENCH_REGFILE_BASE,
        64 * 8,
        Box::new(RegisterFile::new(64 * 8)),
    )
    .map_err(bus_err)?;
    d.add_pio(
        BENCH_CONST_PORT,
        4,
        Box::new(RegisterFile::with_contents(
            BENCH_CONST_VALUE.to_le_bytes().to_vec(),
        )),
    )
    .map_err(bus_err)?;
    let mode = if poll && o.poll_backoff {
        WakeMode::poll()
    } else if poll {
        WakeMode::Poll(PollConfig {
            spins: u32::MAX,
            yields: 0,
            ..PollConfig::default()
        })
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
    )?;
    let handle = client.handle();
    let thread = std::thread::Builder::new()
        .name("bench-client".into())
        .spawn(move || client.run())
        .map_err(|e| bench_error(format!("client thread: {e}")))?;
    let result = (|| {
        vm.start()?;
        let guest = emu.guest(vm.vmid()).map_err(|e| BenchError {
            what: format!("guest: {e}"),
            errno: Some(e),
        })?;
        let run = |rounds: u64| -> Result<RunResult, BenchError> {
            guest
                .run(&bench_workload(vcpus, rounds))
                .map_err(|e| BenchError {
                    what: format!("guest run: {e}"),
                    errno: Some(e),
                })
        };
        let warm = if o.warmup_rounds > 0 {
            run(u64::from(o.warmup_rounds))?.completed
        } else {
            0
        };
        let chunk = if o.chunk_rounds == 0 {
            o.rounds
        } else {
            o.chunk_rounds.min(o.rounds)
        };
        let mut m = Measured {
            issued: 0,
            completed: 0,
            errors: 0,
            seconds: 0.0,
            latencies: Vec::with_capacity(3 * o.rounds as usize * usize::from(vcpus)),
            notifies: 0,
        };
        let mut left = o.rounds;
        while left > 0 {
            let n = chunk.min(left).max(1);
            let t = Instant::now();
            let r = run(u64::from(n))?;
            m.seconds += t.elapsed().as_secs_f64();
            m.issued += r.issued;
            m.completed += r.completed;
            m.errors += (r.mismatches.len() + r.faults.len()) as u64;
            m.latencies.extend_from_slice(&r.latencies_ns);
            left = left.saturating_sub(n);
            if o.max_seconds > 0.0 && m.seconds >= o.max_seconds {
                break;
            }
        }
        Ok((m, warm))
    })();
    handle.stop();
    let joined = thread.join();
    // Counted after the client thread ended: a vCPU may see its completion before the client
    // has counted the NOTIFY that made it.
    let result = result.map(|(mut m, warm)| {
        m.notifies = handle.stats().notifies.saturating_sub(warm);
        m
    });
    let _ = vm.pause();
    match joined {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Err(bench_error("the client thread panicked")),
    }
    result
}
