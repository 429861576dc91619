//! `acrn-hsm run`: a real guest (firmware or a raw payload) on the emulated hypervisor's KVM
//! engine, behind the ACRN ABI, with a PC platform written with the public device API and
//! served by the ioreq client: the host bridge, CMOS, fw_cfg, the i8042 (reset), COM1 (IRQ 4
//! through SET_IRQLINE) on the terminal, `isa-debug-exit` and `debugcon`; with `disk`, a
//! virtio-blk disk (modern virtio-pci, 00:03.0) backed by the file, which SeaBIOS boots.
//!
//! The run ends when the guest writes the debug-exit port (status `(v << 1) | 1`), when a vCPU
//! ends on its own (triple fault, an emulation failure: reported), on Ctrl-A x on the terminal,
//! or at the time-out; the VM is then paused, its requests cleared and destroyed, the DM's
//! order.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use acrn_hsm::client::{ClientConfig, ClientStats, Dispatcher, IoreqClient, RunExit, WakeMode};
use acrn_hsm::devices::virtio::{
    NotifierStats, QueueNotifier, VirtioBlk, VirtioPci, VirtioRng, VirtioStats, VmInterrupts,
};
use acrn_hsm::loader::{self, GuestRam};
use acrn_hsm::pc::{PcOptions, PcPlatform};
use acrn_hsm::trace::{TraceRecorder, TraceSetup, TraceSummary};
use acrn_hsm::{VcpuRegs, VmConfig};
use acrn_hsm_emulator::kvm::{self, GuestExit, KvmStats};
use acrn_hsm_emulator::{Emulator, Engine};

/// Debian's SeaBIOS (`apt-get install seabios`).
pub const SEABIOS_PATH: &str = "/usr/share/seabios/bios.bin";

/// What the guest is.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A firmware image (SeaBIOS's `bios.bin`), from its reset vector.
    Firmware(PathBuf),
    /// A Linux bzImage (boot protocol ≥ 2.06, 64-bit entry), an initrd and a command line.
    Kernel {
        /// The bzImage.
        kernel: PathBuf,
        /// The initrd (cpio), if any.
        initrd: Option<PathBuf>,
        /// The command line.
        cmdline: String,
    },
    /// A raw binary at `addr` with vCPU 0's registers.
    Raw {
        /// The binary.
        bytes: Vec<u8>,
        /// Guest-physical load address.
        addr: u64,
        /// Initial registers of vCPU 0.
        regs: Box<VcpuRegs>,
    },
}

/// Where COM1 goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Console {
    /// Output to stdout, stdin to RX (raw mode on a terminal), Ctrl-A x quits.
    #[default]
    Terminal,
    /// Output captured only ([`RunReport::serial`]).
    Capture,
}

/// The options of a run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The guest.
    pub payload: Payload,
    /// RAM in MiB (default 128).
    pub mem_mib: u64,
    /// vCPUs (default 1).
    pub vcpus: u16,
    /// Polling completion (else notify).
    pub polling: bool,
    /// The `isa-debug-exit` port (default 0xf4); `None`: none.
    pub debug_exit: Option<u16>,
    /// `debugcon` (0x402) output file; `None`: captured only.
    pub debugcon: Option<PathBuf>,
    /// Record every request into this trace.
    pub trace: Option<PathBuf>,
    /// End the run after this long.
    pub timeout: Option<Duration>,
    /// COM1's terminal.
    pub console: Console,
    /// End the run as soon as COM1 has printed this (tests).
    pub until_serial: Option<String>,
    /// A disk image attached as a virtio-blk device (modern virtio-pci at 00:03.0).
    pub disk: Option<PathBuf>,
    /// Attach [`disk`](Self::disk) read-only (VIRTIO_BLK_F_RO; writes answer IOERR).
    pub disk_read_only: bool,
    /// Take [`disk`](Self::disk)'s queue notifications through IOEVENTFD and a worker thread
    /// ([`QueueNotifier`]; default on) instead of an I/O request to the ioreq client each.
    pub disk_ioeventfd: bool,
    /// Let KVM match the VM's ioeventfds itself (`KVM_IOEVENTFD`, [`Emulator::set_kvm_ioeventfd`];
    /// default on): a notify write then never leaves `KVM_RUN`. Off, each one is an exit the
    /// HSM's in-kernel ioeventfd client completes. (Off while recording a trace.)
    pub kvm_ioeventfd: bool,
    /// Attach a virtio-rng device (00:04.0).
    pub rng: bool,
    /// Offer SeaBIOS its serial console (fw_cfg `etc/sercon-port` = COM1; default on). Off, the
    /// firmware neither prints its boot messages on COM1 nor polls COM1's LSR while it waits.
    pub sercon: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            payload: Payload::Firmware(PathBuf::from(SEABIOS_PATH)),
            mem_mib: 128,
            vcpus: 1,
            polling: false,
            debug_exit: Some(0xf4),
            debugcon: None,
            trace: None,
            timeout: None,
            console: Console::Terminal,
            until_serial: None,
            disk: None,
            disk_read_only: false,
            disk_ioeventfd: true,
            kvm_ioeventfd: true,
            rng: false,
            sercon: true,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The guest wrote `value` to the debug-exit port.
    DebugExit(u32),
    /// A vCPU ended on its own (triple fault, emulation failure...).
    GuestExit(GuestExit),
    /// The time-out passed.
    Timeout,
    /// Ctrl-A x.
    Quit,
    /// COM1 printed [`RunConfig::until_serial`].
    SerialMatch,
    /// The ioreq client stopped (its error, if any).
    ClientStopped(String),
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// How it ended.
    pub end: RunEnd,
    /// The exit status: `(v << 1) | 1` for a debug exit, 0 for Ctrl-A x and a serial match, 124
    /// for the time-out, 2 for a vCPU that ended on its own or a client failure.
    pub status: i32,
    /// Everything COM1 transmitted.
    pub serial: Vec<u8>,
    /// Everything written to debugcon.
    pub debugcon: Vec<u8>,
    /// The KVM engine's counters.
    pub kvm: KvmStats,
    /// The ioreq client's counters.
    pub client: ClientStats,
    /// Resets the guest asked for (i8042, 0xCF9, port 0x92), each done the DM's way.
    pub resets: u64,
    /// COM1 interrupt pulses sent through SET_IRQLINE.
    pub uart_irqs: i32,
    /// Wall time.
    pub elapsed: Duration,
    /// The trace written, if any.
    pub trace: Option<TraceSummary>,
    /// The virtio-blk transport's counters, if a disk was attached.
    pub virtio_blk: Option<VirtioStats>,
    /// The virtio-blk queue notifier's counters, if it took the notifications
    /// ([`RunConfig::disk_ioeventfd`]).
    pub virtio_blk_notifier: Option<NotifierStats>,
}

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError(pub String);

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

impl From<acrn_hsm::Error> for RunError {
    fn from(e: acrn_hsm::Error) -> Self {
        RunError(e.to_string())
    }
}

fn err(s: impl Into<String>) -> RunError {
    RunError(s.into())
}

/// Raw terminal mode for the run's duration (restored on drop).
struct RawTerminal(Option<libc::termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        // SAFETY: isatty only inspects fd 0.
        if unsafe { libc::isatty(0) } != 1 {
            return RawTerminal(None);
        }
        let mut t = std::mem::MaybeUninit::<libc::termios>::zeroed();
        // SAFETY: `t` is a valid termios buffer for tcgetattr to fill.
        if unsafe { libc::tcgetattr(0, t.as_mut_ptr()) } != 0 {
            return RawTerminal(None);
        }
        // SAFETY: tcgetattr succeeded, so `t` is initialised.
        let old = unsafe { t.assume_init() };
        let mut raw = old;
        // SAFETY: cfmakeraw edits the termios struct in place.
        unsafe { libc::cfmakeraw(&mut raw) };
        // Keep output post-processing (\n → \r\n) so host messages stay readable.
        raw.c_oflag |= libc::OPOST;
        // SAFETY: `raw` is a valid termios.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) };
        RawTerminal(Some(old))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restores the attributes read in `enter`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
    }
}

/// Why SeaBIOS cannot run on the KVM engine here (`None`: it can): an unusable `/dev/kvm`, or
/// Debian's `seabios` package missing. For the tests and benchmarks that skip with a reason.
pub fn seabios_unavailable() -> Option<String> {
    let p = kvm::probe();
    if !p.usable {
        return Some(format!("KVM engine unusable here: {}", p.reason));
    }
    if !std::path::Path::new(SEABIOS_PATH).exists() {
        return Some(format!("{SEABIOS_PATH} missing (apt-get install seabios)"));
    }
    None
}

/// Runs a guest to its end. Fails before starting when KVM is missing or refuses.
pub fn run_guest(config: &RunConfig) -> Result<RunReport, RunError> {
    let probe = kvm::probe();
    if !probe.usable {
        return Err(err(format!(
            "the KVM engine cannot run here: {} (acrn-hsm run needs a usable /dev/kvm; the \
             workload engine needs none)",
            probe.reason
        )));
    }
    let emu = Emulator::new();
    emu.set_engine(Engine::Kvm);
    emu.set_kvm_ioeventfd(config.kvm_ioeventfd);
    let hsm = emu.open_hsm();
    let vm = Arc::new(hsm.create_vm(&VmConfig {
        vcpu_num: config.vcpus.max(1),
        vm_flag: if config.polling {
            acrn_hsm::GUEST_FLAG_IO_COMPLETION_POLLING
        } else {
            0
        },
        ..Default::default()
    })?);
    let vcpus = vm.vcpu_num();
    let ram = GuestRam::map(&vm, config.mem_mib.max(2) << 20)?;
    let mut shadow = None;
    match &config.payload {
        Payload::Firmware(path) => {
            let image = std::fs::read(path).map_err(|e| {
                err(format!(
                    "{}: {e}{}",
                    path.display(),
                    if path.as_os_str() == SEABIOS_PATH {
                        " (install Debian's seabios package: apt-get install seabios)"
                    } else {
                        ""
                    }
                ))
            })?;
            let fw = loader::load_firmware(&vm, &ram, image)?;
            shadow = Some(fw);
        }
        Payload::Raw { bytes, addr, regs } => {
            loader::load_raw(&vm, &ram, *addr, bytes, regs)?;
        }
        Payload::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            let read =
                |p: &PathBuf| std::fs::read(p).map_err(|e| err(format!("{}: {e}", p.display())));
            let image = read(kernel)?;
            let rd = initrd.as_ref().map(read).transpose()?;
            loader::load_bzimage(&vm, &ram, &image, rd.as_deref(), cmdline)
                .map_err(|e| err(format!("{}: {e}", kernel.display())))?;
        }
    }

    // The platform.
    let control = acrn_hsm::client::VmControl::new();
    let mut d = Dispatcher::new();
    let terminal = config.console == Console::Terminal;
    let mut dcon_file = match &config.debugcon {
        Some(p) => {
            Some(std::fs::File::create(p).map_err(|e| err(format!("{}: {e}", p.display())))?)
        }
        None => None,
    };
    let mut options = PcOptions::for_ram(&ram, vcpus);
    options.sercon = config.sercon;
    options.debug_exit = config.debug_exit;
    options.firmware_shadow = shadow.as_ref().map(|fw| fw.shadow());
    if terminal {
        options.com1_sink = Some(Box::new(|b| {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&[b]);
            let _ = o.flush();
        }));
    }
    if dcon_file.is_some() {
        options.debugcon_sink = Some(Box::new(move |b: &[u8]| {
            if let Some(f) = dcon_file.as_mut() {
                let _ = f.write_all(b);
            }
        }));
    }
    let pc = PcPlatform::install(&mut d, &vm, &control, options).map_err(|e| err(e.to_string()))?;
    let mut blk = None;
    let mut blk_notifier = None;
    if let Some(path) = &config.disk {
        let dev = VirtioBlk::open(path, config.disk_read_only)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        let t = VirtioPci::new(
            Box::new(dev),
            vm.clone(),
            Arc::new(VmInterrupts(vm.clone())),
        );
        blk = Some(t.clone());
        if config.disk_ioeventfd {
            blk_notifier = Some(
                QueueNotifier::attach(&t, vm.clone())
                    .map_err(|e| err(format!("virtio-blk ioeventfd: {e}")))?,
            );
        }
        let (cfg, bars) = t.into_parts();
        d.add_pci_with_bars(acrn_hsm::client::Bdf::new(0, 3, 0), cfg, bars)
            .map_err(|e| err(e.to_string()))?;
    }
    if config.rng {
        let t = VirtioPci::new(
            Box::new(VirtioRng::new()),
            vm.clone(),
            Arc::new(VmInterrupts(vm.clone())),
        );
        let (cfg, bars) = t.into_parts();
        d.add_pci_with_bars(acrn_hsm::client::Bdf::new(0, 4, 0), cfg, bars)
            .map_err(|e| err(e.to_string()))?;
    }
    let recorder = match &config.trace {
        Some(path) => {
            let mut setup = TraceSetup::new(
                &format!("acrn-hsm run (vmid {})", vm.vmid()),
                vm.vmid(),
                vcpus,
                config.polling,
                d.trace_devices(),
            );
            setup.emulated = true;
            Some(TraceRecorder::create(path, &setup).map_err(|e| err(e.to_string()))?)
        }
        None => None,
    };
    if let Some(r) = &recorder {
        emu.set_kvm_recorder(vm.vmid(), Some(r.guest()));
    }
    let mut client = IoreqClient::new(
        vm.clone(),
        d,
        ClientConfig {
            mode: if config.polling {
                WakeMode::poll()
            } else {
                WakeMode::Blocking
            },
            control: Some(control),
            recorder: recorder.as_ref().map(TraceRecorder::client),
            ..Default::default()
        },
    )?;
    let handle = client.handle();
    let client_thread = std::thread::Builder::new()
        .name("ioreq-client".into())
        .spawn(move || {
            let r = client.run();
            (r, client.stats())
        })
        .map_err(|e| err(e.to_string()))?;

    // stdin → COM1 RX; Ctrl-A x quits.
    let quit = Arc::new(AtomicBool::new(false));
    let stop_input = Arc::new(AtomicBool::new(false));
    let _raw = if terminal {
        Some(RawTerminal::enter())
    } else {
        None
    };
    if terminal {
        let (quit, stop_input) = (quit.clone(), stop_input.clone());
        let (input, irq) = pc.serial_feed();
        std::thread::Builder::new()
            .name("com1-stdin".into())
            .spawn(move || stdin_loop(&input, &irq, &quit, &stop_input))
            .map_err(|e| err(e.to_string()))?;
    }

    let t0 = Instant::now();
    if let Err(e) = vm.start() {
        handle.stop();
        let _ = client_thread.join();
        return Err(err(format!(
            "START_VM: {e}: {}",
            emu.kvm_error(vm.vmid()).unwrap_or_default()
        )));
    }
    let end = loop {
        if let Some(st) = pc.exit_status() {
            break RunEnd::DebugExit((st as u32) >> 1);
        }
        if let Some(e) = emu.guest_exits(vm.vmid()).into_iter().next() {
            break RunEnd::GuestExit(e);
        }
        if quit.load(Ordering::Acquire) {
            break RunEnd::Quit;
        }
        if let Some(pat) = &config.until_serial {
            if pc.serial().text().contains(pat.as_str()) {
                break RunEnd::SerialMatch;
            }
        }
        if client_thread.is_finished() {
            break RunEnd::ClientStopped(String::new());
        }
        if config.timeout.is_some_and(|t| t0.elapsed() >= t) {
            break RunEnd::Timeout;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    stop_input.store(true, Ordering::Release);
    // The DM's order: pause, clear the requests, stop serving, destroy.
    let _ = vm.pause();
    let _ = vm.clear_vm_ioreq();
    handle.stop();
    let (client_result, client_stats) = client_thread
        .join()
        .map_err(|_| err("the ioreq client thread panicked"))?;
    let end = match (end, client_result) {
        (RunEnd::ClientStopped(_), Err(e)) => RunEnd::ClientStopped(e.to_string()),
        (RunEnd::ClientStopped(_), Ok(RunExit::PoweredOff)) => {
            if let Some(st) = pc.exit_status() {
                RunEnd::DebugExit((st as u32) >> 1)
            } else {
                RunEnd::ClientStopped("powered off".into())
            }
        }
        (end, _) => end,
    };
    let notifier_stats = blk_notifier.as_ref().map(QueueNotifier::stats);
    if let Some(n) = blk_notifier {
        n.detach();
    }
    let kvm_stats = emu.kvm_stats(vm.vmid()).unwrap_or_default();
    emu.set_kvm_recorder(vm.vmid(), None);
    let _ = vm.destroy();
    let kvm_stats = emu.kvm_stats(vm.vmid()).unwrap_or(kvm_stats);
    let trace = match recorder {
        Some(r) => Some(r.finish().map_err(|e| err(e.to_string()))?),
        None => None,
    };
    let status = match &end {
        RunEnd::DebugExit(v) => ((v << 1) | 1) as i32,
        RunEnd::Quit | RunEnd::SerialMatch => 0,
        RunEnd::Timeout => 124,
        RunEnd::GuestExit(_) | RunEnd::ClientStopped(_) => 2,
    };
    let resets = pc.kbc_resets() + client_stats.resets;
    Ok(RunReport {
        end,
        status,
        serial: pc.serial().bytes(),
        debugcon: pc.debugcon(),
        kvm: kvm_stats,
        client: client_stats,
        resets,
        uart_irqs: pc.uart_irqs(),
        elapsed: t0.elapsed(),
        trace,
        virtio_blk: blk.map(|t| t.stats()),
        virtio_blk_notifier: notifier_stats,
    })
}

fn stdin_loop(
    input: &acrn_hsm::devices::UartInput,
    irq: &acrn_hsm::devices::platform::UartIrqHandle,
    quit: &AtomicBool,
    stop: &AtomicBool,
) {
    let mut ctrl_a = false;
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Acquire) {
        let mut p = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, 100) };
        if r <= 0 {
            continue;
        }
        // SAFETY: reads into `buf`, at most its length.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
        let mut out = Vec::new();
        for &b in &buf[..n as usize] {
            if ctrl_a {
                ctrl_a = false;
                match b {
                    b'x' | b'X' => {
                        quit.store(true, Ordering::Release);
                        return;
                    }
                    0x01 => out.push(0x01),
                    _ => out.push(b),
                }
            } else if b == 0x01 {
                ctrl_a = true;
            } else {
                out.push(b);
            }
        }
        if !out.is_empty() {
            input.push(&out);
            irq.rx();
        }
    }
}

/// A one-line description of the end, for the CLI.
pub fn describe_end(end: &RunEnd) -> String {
    match end {
        RunEnd::DebugExit(v) => format!("the guest wrote {v:#x} to isa-debug-exit"),
        RunEnd::GuestExit(e) => format!("the guest stopped: {e}"),
        RunEnd::Timeout => "time-out".into(),
        RunEnd::Quit => "Ctrl-A x".into(),
        RunEnd::SerialMatch => "COM1 printed the expected text".into(),
        RunEnd::ClientStopped(e) if e.is_empty() => "the ioreq client stopped".into(),
        RunEnd::ClientStopped(e) => format!("the ioreq client failed: {e}"),
    }
}
