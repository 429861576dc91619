//! `acrn-hsm run` / `runGuest()`: a real guest on the KVM engine (the scenario is the core's
//! `acrn_hsm_tools::run`); this file only converts options and the report.

use std::path::PathBuf;
use std::time::Duration;

use acrn_hsm_emulator::kvm;
use acrn_hsm_tools::run::{self, Console, Payload, RunConfig, RunEnd};
use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;

use crate::errors::{Failure, Result, coded_error};

/// Options of [`run_guest`].
#[napi(object)]
#[derive(Debug, Default)]
pub struct RunGuestOptions {
    /// Firmware image path, or `'seabios'` for Debian's `/usr/share/seabios/bios.bin`.
    pub bios: Option<String>,
    /// A raw binary to load instead of firmware.
    pub raw: Option<String>,
    /// A Linux bzImage to load instead of firmware (64-bit boot protocol).
    pub kernel: Option<String>,
    /// Its initrd.
    pub initrd: Option<String>,
    /// Its command line (default `console=ttyS0`).
    pub cmdline: Option<String>,
    /// Its guest-physical load address (default 0x1000), real mode from there.
    pub raw_addr: Option<f64>,
    /// RAM in MiB (default 128).
    pub mem_mib: Option<u32>,
    /// vCPUs (default 1).
    pub vcpus: Option<u32>,
    /// `'notify'` (default) or `'poll'`.
    pub mode: Option<String>,
    /// The isa-debug-exit port (default 0xf4; 0: none).
    pub debug_exit: Option<u32>,
    /// debugcon (0x402) output file.
    pub debugcon: Option<String>,
    /// Trace file.
    pub trace: Option<String>,
    /// Seconds before the run ends.
    pub timeout: Option<f64>,
    /// COM1 on the terminal (default true); false: captured into the report only.
    pub terminal: Option<bool>,
    /// End once COM1 has printed this text.
    pub until_serial: Option<String>,
    /// A disk image attached as virtio-blk (modern virtio-pci at 00:03.0).
    pub disk: Option<String>,
    /// Attach the disk read-only.
    pub disk_read_only: Option<bool>,
    /// How the disk's queue notifications arrive: `'kvm'` (default: IOEVENTFD, matched by KVM
    /// itself), `'hsm'` (IOEVENTFD through the HSM's in-kernel client), `'ioreq'` (an I/O
    /// request to the ioreq client each).
    pub disk_notify: Option<String>,
    /// Attach a virtio-rng device (00:04.0).
    pub rng: Option<bool>,
}

/// The run on the libuv pool.
pub struct RunTask {
    config: Option<RunConfig>,
    failure: Failure,
}

impl Task for RunTask {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<String> {
        let r = self.compute_coded();
        self.failure.keep(r)
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<String> {
        self.failure.reject(&env, err)
    }

    fn resolve(&mut self, _env: Env, output: String) -> napi::Result<String> {
        Ok(output)
    }
}

impl RunTask {
    fn compute_coded(&mut self) -> Result<String> {
        let config = self
            .config
            .take()
            .ok_or_else(|| coded_error("ERR_INVALID_STATE", "run started twice"))?;
        let r = run::run_guest(&config).map_err(|e| coded_error("ERR_RUN", &e.0))?;
        let (end, exit) = match &r.end {
            RunEnd::DebugExit(_) => ("debug-exit", None),
            RunEnd::GuestExit(e) => ("guest-exit", Some(e.to_string())),
            RunEnd::Timeout => ("timeout", None),
            RunEnd::Quit => ("quit", None),
            RunEnd::SerialMatch => ("serial-match", None),
            RunEnd::ClientStopped(_) => ("client-stopped", None),
        };
        let v = serde_json::json!({
            "end": end,
            "reason": run::describe_end(&r.end),
            "guestExit": exit,
            "status": r.status,
            "serial": String::from_utf8_lossy(&r.serial),
            "debugconBytes": r.debugcon.len(),
            "elapsedMs": r.elapsed.as_secs_f64() * 1e3,
            "kvm": {
                "exits": r.kvm.exits,
                "issued": r.kvm.issued,
                "hvHandled": r.kvm.hv_handled,
                "completed": r.kvm.completed,
                "faults": r.kvm.faults,
                "starts": r.kvm.starts,
                "irqs": r.kvm.irqs,
            },
            "client": r.client,
            "resets": r.resets,
            "uartIrqs": r.uart_irqs,
            "traceRecords": r.trace.as_ref().map(|t| t.records),
            "virtioBlk": r.virtio_blk.map(|v| serde_json::json!({
                "notifies": v.notifies,
                "chains": v.chains,
                "interrupts": v.interrupts,
                "needsReset": v.needs_reset,
                "ioeventfdWakeups": r.virtio_blk_notifier.map(|n| n.wakeups),
            })),
        });
        Ok(v.to_string())
    }
}

/// Runs a real guest on the emulated hypervisor's KVM engine; resolves to the report's JSON.
#[napi(ts_return_type = "Promise<string>")]
pub fn run_guest(options: RunGuestOptions) -> Result<AsyncTask<RunTask>> {
    let mut c = RunConfig::default();
    match (&options.bios, &options.raw) {
        (Some(_), Some(_)) => {
            return Err(coded_error(
                "ERR_INVALID_ARG",
                "give either bios or raw, not both",
            ));
        }
        (_, Some(raw)) => {
            let bytes =
                std::fs::read(raw).map_err(|e| coded_error("ERR_RUN", &format!("{raw}: {e}")))?;
            let addr = options.raw_addr.unwrap_or(4096.0);
            if !(addr.is_finite() && (0.0..1_048_576.0).contains(&addr) && addr.fract() == 0.0) {
                return Err(coded_error(
                    "ERR_OUT_OF_RANGE",
                    "rawAddr must be an integer below 1 MiB",
                ));
            }
            let addr = addr as u64;
            c.payload = Payload::Raw {
                bytes,
                addr,
                regs: Box::new(acrn_hsm::loader::real_mode_regs(addr)),
            };
        }
        (Some(b), None) if b != "seabios" => c.payload = Payload::Firmware(PathBuf::from(b)),
        _ => {}
    }
    if let Some(k) = options.kernel {
        if options.bios.is_some() || options.raw.is_some() {
            return Err(coded_error(
                "ERR_INVALID_ARG",
                "give one of bios, raw, kernel",
            ));
        }
        c.payload = Payload::Kernel {
            kernel: PathBuf::from(k),
            initrd: options.initrd.map(PathBuf::from),
            cmdline: options
                .cmdline
                .unwrap_or_else(|| "console=ttyS0".to_string()),
        };
    } else if options.initrd.is_some() || options.cmdline.is_some() {
        return Err(coded_error(
            "ERR_INVALID_ARG",
            "initrd and cmdline need kernel",
        ));
    }
    if let Some(m) = options.mem_mib {
        if !(2..=65536).contains(&m) {
            return Err(coded_error(
                "ERR_OUT_OF_RANGE",
                "memMib must be in 2..65536",
            ));
        }
        c.mem_mib = u64::from(m);
    }
    if let Some(v) = options.vcpus {
        c.vcpus = u16::try_from(v)
            .ok()
            .filter(|v| (1..=16).contains(v))
            .ok_or_else(|| coded_error("ERR_OUT_OF_RANGE", "vcpus must be in 1..16"))?;
    }
    c.polling = match options.mode.as_deref() {
        None | Some("notify") => false,
        Some("poll") => true,
        Some(m) => {
            return Err(coded_error(
                "ERR_INVALID_ARG",
                &format!("mode must be 'notify' or 'poll', got '{m}'"),
            ));
        }
    };
    if let Some(p) = options.debug_exit {
        c.debug_exit = match p {
            0 => None,
            p => Some(u16::try_from(p).map_err(|_| {
                coded_error("ERR_OUT_OF_RANGE", "debugExit must be a port below 0x10000")
            })?),
        };
    }
    c.debugcon = options.debugcon.map(PathBuf::from);
    c.disk = options.disk.map(PathBuf::from);
    c.disk_read_only = options.disk_read_only.unwrap_or(false);
    if c.disk_read_only && c.disk.is_none() {
        return Err(coded_error("ERR_INVALID_ARG", "diskReadOnly needs disk"));
    }
    (c.disk_ioeventfd, c.kvm_ioeventfd) = match options.disk_notify.as_deref() {
        None | Some("kvm") => (true, true),
        Some("hsm") => (true, false),
        Some("ioreq") => (false, false),
        Some(m) => {
            return Err(coded_error(
                "ERR_INVALID_ARG",
                &format!("diskNotify must be 'kvm', 'hsm' or 'ioreq', got '{m}'"),
            ));
        }
    };
    c.rng = options.rng.unwrap_or(false);
    c.trace = options.trace.map(PathBuf::from);
    if let Some(t) = options.timeout {
        if !(t.is_finite() && t > 0.0) {
            return Err(coded_error(
                "ERR_OUT_OF_RANGE",
                "timeout must be a positive number of seconds",
            ));
        }
        c.timeout = Some(Duration::from_secs_f64(t));
    }
    if options.terminal == Some(false) {
        c.console = Console::Capture;
    }
    c.until_serial = options.until_serial;
    Ok(AsyncTask::new(RunTask {
        config: Some(c),
        failure: Failure::default(),
    }))
}

/// The execution engines here, as JSON: `{ workload: {usable}, kvm: {usable, reason, apiVersion,
/// maxVcpus} }`.
#[napi]
pub fn engines_info() -> String {
    let p = kvm::probe();
    serde_json::json!({
        "workload": { "usable": true, "reason": "scripted accesses on emulated vCPU threads" },
        "kvm": {
            "usable": p.usable,
            "reason": p.reason,
            "apiVersion": p.api_version,
            "maxVcpus": p.max_vcpus,
        },
    })
    .to_string()
}

/// A test disk for virtio-blk backends ([`acrn_hsm_tools::boot_disk`]).
#[napi(object)]
pub struct BootTestDisk {
    /// The 1 MiB image.
    pub image: napi::bindgen_prelude::Buffer,
    /// The texts the boot sector prints on COM1, in order (sectors 1, 2, 3).
    pub texts: Vec<String>,
    /// The isa-debug-exit status when every read succeeded.
    pub exit_status: i32,
}

/// A disk whose boot sector, booted by SeaBIOS, reads sectors 1–3 through the BIOS disk service
/// (so through the virtio-blk device under test), prints their texts on COM1 and writes 0x10 to
/// isa-debug-exit (status 33; a failed read: 35).
#[napi]
pub fn boot_test_disk() -> BootTestDisk {
    BootTestDisk {
        image: acrn_hsm_tools::boot_disk::image().into(),
        texts: acrn_hsm_tools::boot_disk::SECTOR_TEXTS
            .iter()
            .map(|s| (*s).to_string())
            .collect(),
        exit_status: ((acrn_hsm_tools::boot_disk::EXIT_VALUE << 1) | 1) as i32,
    }
}
