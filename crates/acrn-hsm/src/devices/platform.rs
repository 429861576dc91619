//! The PC platform a real guest (firmware, a kernel) expects, written with the public device API
//! ([`IoDevice`], [`PciDevice`]) and served by the ioreq client like any other device:
//!
//! * [`host_bridge`]: the PCI host bridge at 00:00.0. An i440FX (8086:1237) with QEMU's
//!   subsystem ids (1af4:1100): SeaBIOS identifies "QEMU (i440fx)" by exactly these
//!   (`src/fw/paravirt.c qemu_detect`), and then knows where the PAM registers are
//!   (`src/fw/shadow.c`; writable here, the shadow RAM is plain RAM).
//! * [`Cmos`]: the MC146818 RTC and NVRAM at 0x70/0x71, the time from the host clock (BCD,
//!   24 h, UIP never stuck), and the memory-size registers firmware reads (0x15/0x16 base,
//!   0x17/0x18 and 0x30/0x31 extended, 0x34/0x35 above 16 MiB in 64 KiB units, 0x5b–0x5d above
//!   4 GiB, 0x5f the vCPU count − 1, as QEMU's `pc_cmos_init` fills them).
//! * [`FwCfg`]: QEMU's fw_cfg at 0x510 (selector) / 0x511 (data), traditional interface only,
//!   with the signature, the id, the CPU count and a file directory. Debian's SeaBIOS enables its
//!   serial console only when fw_cfg has `etc/sercon-port` (its `sercon_setup`); without it the
//!   banner goes to the debug port 0x402 only.
//! * [`I8042`]: the keyboard controller at 0x60/0x64: self-tests, the command byte, a keyboard
//!   that answers reset/identify, and the reset line (0x64 ← 0xFE, or the output port's bit 0)
//!   as a [`VmAction::Reset`].
//! * [`DebugExit`]: QEMU's `isa-debug-exit`: a write of `v` ends the run with status
//!   `(v << 1) | 1` ([`VmAction::PowerOff`]).
//! * [`DebugCon`]: QEMU's `debugcon` (0x402): written bytes go to a sink; reads return 0xE9.
//! * [`Port92`]: the "fast A20" system control port.
//! * [`IrqUart`]: a [`Uart16550`] whose interrupt (gated by MCR.OUT2, as on PCs) goes to the
//!   guest through SET_IRQLINE.
//! * [`FirmwareShadow`]: not a device on a bus: on a device-model reset it copies the firmware
//!   image back to its RAM shadow below 1 MiB (as a PC's PAM reset maps the ROM back).

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::client::{IoDevice, PciDevice, VmAction, VmControl};
use crate::devices::{PciFunction, Uart16550};
use crate::memory::UserPages;
use crate::vm::Vm;

/// The host bridge SeaBIOS recognises as QEMU's i440FX (8086:1237, subsystem 1af4:1100, class
/// 06.00, revision 2).
pub fn host_bridge() -> Box<dyn PciDevice> {
    Box::new(
        PciFunction::new(0x8086, 0x1237)
            .with_name("host-bridge")
            .with_class(0x06, 0x00, 0x00, 0x02)
            .with_subsystem(0x1af4, 0x1100),
    )
}

/// The RTC/NVRAM.
#[derive(Debug)]
pub struct Cmos {
    index: u8,
    nvram: [u8; 128],
}

impl Cmos {
    /// A CMOS for a machine with `ram` bytes of RAM (below 4 GiB: `ram_low`; above: the rest)
    /// and `vcpus` CPUs.
    pub fn new(ram_low: u64, ram_high: u64, vcpus: u16) -> Cmos {
        let mut n = [0u8; 128];
        n[0x0a] = 0x26; // 32.768 kHz, 1024 Hz periodic rate
        n[0x0b] = 0x02; // 24 h, BCD
        n[0x0d] = 0x80; // valid RAM and time
        n[0x0f] = 0x00; // shutdown status: normal
        n[0x10] = 0x00; // no floppy
        n[0x12] = 0x00; // no IDE disks
        n[0x14] = 0x06; // equipment: FPU, VGA-less text
        n[0x15] = 0x80; // 640 KiB base memory
        n[0x16] = 0x02;
        let ext_kib = (ram_low.saturating_sub(1 << 20) >> 10).min(0xffff) as u16;
        n[0x17] = ext_kib as u8;
        n[0x18] = (ext_kib >> 8) as u8;
        n[0x30] = ext_kib as u8;
        n[0x31] = (ext_kib >> 8) as u8;
        let above16 = (ram_low.saturating_sub(16 << 20) >> 16).min(0xffff) as u16;
        n[0x34] = above16 as u8;
        n[0x35] = (above16 >> 8) as u8;
        let high = ram_high >> 16;
        n[0x5b] = high as u8;
        n[0x5c] = (high >> 8) as u8;
        n[0x5d] = (high >> 16) as u8;
        n[0x5f] = vcpus.saturating_sub(1) as u8;
        Cmos { index: 0, nvram: n }
    }

    fn time_reg(&self, reg: u8) -> Option<u8> {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let days = secs / 86400;
        let t = secs % 86400;
        let (y, m, d) = civil_from_days(days as i64);
        let bcd = |v: u64| (((v / 10) << 4) | (v % 10)) as u8;
        Some(match reg {
            0x00 => bcd(t % 60),
            0x02 => bcd((t / 60) % 60),
            0x04 => bcd(t / 3600),
            0x06 => bcd((days + 4) % 7 + 1),
            0x07 => bcd(d),
            0x08 => bcd(m),
            0x09 => bcd(y % 100),
            0x32 => bcd(y / 100),
            _ => return None,
        })
    }
}

/// Days since 1970-01-01 → (year, month, day) (the proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (u64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as u64, m as u64, d as u64)
}

impl IoDevice for Cmos {
    fn name(&self) -> &str {
        "cmos"
    }
    fn read(&mut self, offset: u64, _size: u8) -> u64 {
        if offset == 0 {
            return 0xff;
        }
        let r = self.index & 0x7f;
        let v = match r {
            0x0c => {
                // Reading C clears the flags.
                let v = self.nvram[0x0c];
                self.nvram[0x0c] = 0;
                v
            }
            _ => self.time_reg(r).unwrap_or(self.nvram[usize::from(r)]),
        };
        u64::from(v)
    }
    fn write(&mut self, offset: u64, _size: u8, value: u64) {
        if offset == 0 {
            self.index = value as u8;
            return;
        }
        let r = usize::from(self.index & 0x7f);
        match r {
            // Time registers follow the host clock; C and D are read-only.
            0x00..=0x09 | 0x0c | 0x0d | 0x32 => {}
            0x0a => self.nvram[r] = value as u8 & 0x7f,
            _ => self.nvram[r] = value as u8,
        }
    }
}

/// fw_cfg's well-known selectors.
pub mod fw_cfg_key {
    /// "QEMU".
    pub const SIGNATURE: u16 = 0x0000;
    /// Interface features (bit 0 traditional, bit 1 DMA).
    pub const ID: u16 = 0x0001;
    /// RAM size (u64).
    pub const RAM_SIZE: u16 = 0x0003;
    /// Boot CPUs (u16).
    pub const NB_CPUS: u16 = 0x0005;
    /// Maximum CPUs (u16).
    pub const MAX_CPUS: u16 = 0x000f;
    /// The file directory.
    pub const FILE_DIR: u16 = 0x0019;
    /// The first file's selector.
    pub const FILE_FIRST: u16 = 0x0020;
}

/// QEMU's fw_cfg, traditional (PIO) interface: selector at offset 0 (2 bytes), data at
/// offset 1 (1 byte, sequential).
#[derive(Debug)]
pub struct FwCfg {
    items: std::collections::BTreeMap<u16, Vec<u8>>,
    files: Vec<(String, u16)>,
    selected: u16,
    offset: usize,
}

impl FwCfg {
    /// fw_cfg for a machine with `ram` bytes and `vcpus` CPUs (no files yet).
    pub fn new(ram: u64, vcpus: u16) -> FwCfg {
        let mut f = FwCfg {
            items: Default::default(),
            files: Vec::new(),
            selected: 0,
            offset: 0,
        };
        f.items.insert(fw_cfg_key::SIGNATURE, b"QEMU".to_vec());
        f.items.insert(fw_cfg_key::ID, 1u32.to_le_bytes().to_vec());
        f.items
            .insert(fw_cfg_key::RAM_SIZE, ram.to_le_bytes().to_vec());
        f.items
            .insert(fw_cfg_key::NB_CPUS, vcpus.to_le_bytes().to_vec());
        f.items
            .insert(fw_cfg_key::MAX_CPUS, vcpus.to_le_bytes().to_vec());
        f.rebuild_dir();
        f
    }

    /// Adds a named file (e.g. `etc/sercon-port`).
    pub fn with_file(mut self, name: &str, data: Vec<u8>) -> FwCfg {
        let sel = fw_cfg_key::FILE_FIRST + self.files.len() as u16;
        self.files.push((name.to_string(), sel));
        self.items.insert(sel, data);
        self.rebuild_dir();
        self
    }

    fn rebuild_dir(&mut self) {
        let mut d = (self.files.len() as u32).to_be_bytes().to_vec();
        for (name, sel) in &self.files {
            let size = self.items.get(sel).map_or(0, Vec::len) as u32;
            d.extend_from_slice(&size.to_be_bytes());
            d.extend_from_slice(&sel.to_be_bytes());
            d.extend_from_slice(&[0, 0]);
            let mut n = [0u8; 56];
            let b = name.as_bytes();
            n[..b.len().min(55)].copy_from_slice(&b[..b.len().min(55)]);
            d.extend_from_slice(&n);
        }
        self.items.insert(fw_cfg_key::FILE_DIR, d);
    }
}

impl IoDevice for FwCfg {
    fn name(&self) -> &str {
        "fw-cfg"
    }
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        if offset != 1 {
            return 0;
        }
        let mut v = 0u64;
        for k in 0..usize::from(size.min(8)) {
            let b = self
                .items
                .get(&self.selected)
                .and_then(|d| d.get(self.offset))
                .copied()
                .unwrap_or(0);
            self.offset += 1;
            v |= u64::from(b) << (8 * k);
        }
        v
    }
    fn write(&mut self, offset: u64, _size: u8, value: u64) {
        if offset == 0 {
            self.selected = value as u16;
            self.offset = 0;
        }
    }
    fn reset(&mut self) {
        self.selected = 0;
        self.offset = 0;
    }
}

/// The i8042 keyboard controller (data 0x60 at offset 0, status/command 0x64 at offset 4).
#[derive(Debug)]
pub struct I8042 {
    control: VmControl,
    out: std::collections::VecDeque<u8>,
    cmd_byte: u8,
    /// A controller command waiting for its data byte (0x60, 0xD1, ...).
    pending_cmd: Option<u8>,
    /// A keyboard command waiting for its parameter (0xED, 0xF3, ...).
    kbd_param: bool,
    resets: Arc<AtomicI32>,
}

impl I8042 {
    /// A controller asking `control` for a reset on 0x64 ← 0xFE.
    pub fn new(control: VmControl) -> I8042 {
        I8042 {
            control,
            out: Default::default(),
            cmd_byte: 0x45,
            pending_cmd: None,
            kbd_param: false,
            resets: Arc::new(AtomicI32::new(0)),
        }
    }

    /// Resets the guest asked for through this controller (shared counter).
    pub fn resets(&self) -> Arc<AtomicI32> {
        self.resets.clone()
    }

    fn reset_line(&mut self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
        self.control.request(VmAction::Reset);
    }

    fn keyboard(&mut self, b: u8) {
        if self.kbd_param {
            self.kbd_param = false;
            self.out.push_back(0xfa);
            return;
        }
        match b {
            0xff => self.out.extend([0xfa, 0xaa]),
            0xf2 => self.out.extend([0xfa, 0xab, 0x83]),
            0xed | 0xf0 | 0xf3 => {
                self.kbd_param = true;
                self.out.push_back(0xfa);
            }
            _ => self.out.push_back(0xfa),
        }
    }
}

impl IoDevice for I8042 {
    fn name(&self) -> &str {
        "i8042"
    }
    fn read(&mut self, offset: u64, _size: u8) -> u64 {
        match offset {
            0 => u64::from(self.out.pop_front().unwrap_or(0)),
            4 => {
                // OBF, system flag (self-test passed), keyboard unlocked.
                let obf = u8::from(!self.out.is_empty());
                u64::from(obf | 0x04 | 0x10)
            }
            _ => 0xff,
        }
    }
    fn write(&mut self, offset: u64, _size: u8, value: u64) {
        let b = value as u8;
        match offset {
            0 => match self.pending_cmd.take() {
                Some(0x60) => self.cmd_byte = b,
                Some(0xd1) => {
                    if b & 1 == 0 {
                        self.reset_line();
                    }
                }
                Some(0xd2) => self.out.push_back(b),
                Some(_) => {}
                None => self.keyboard(b),
            },
            4 => match b {
                0x20 => self.out.push_back(self.cmd_byte),
                0x60 | 0xd1 | 0xd2 | 0xd3 | 0xd4 => self.pending_cmd = Some(b),
                0xaa => self.out.push_back(0x55),
                0xab | 0xa9 => self.out.push_back(0x00),
                0xd0 => self.out.push_back(0x03),
                0xfe => self.reset_line(),
                _ => {}
            },
            _ => {}
        }
    }
    fn reset(&mut self) {
        self.out.clear();
        self.cmd_byte = 0x45;
        self.pending_cmd = None;
        self.kbd_param = false;
    }
}

/// QEMU's `isa-debug-exit`: a write of `v` ends the run with status `(v << 1) | 1`.
#[derive(Debug)]
pub struct DebugExit {
    control: VmControl,
    status: Arc<AtomicI32>,
}

impl DebugExit {
    /// A debug-exit port powering off through `control`.
    pub fn new(control: VmControl) -> DebugExit {
        DebugExit {
            control,
            status: Arc::new(AtomicI32::new(-1)),
        }
    }
    /// The exit status once written (−1 before).
    pub fn status(&self) -> Arc<AtomicI32> {
        self.status.clone()
    }
}

impl IoDevice for DebugExit {
    fn name(&self) -> &str {
        "isa-debug-exit"
    }
    fn read(&mut self, _offset: u64, size: u8) -> u64 {
        crate::client::ones(u64::from(size))
    }
    fn write(&mut self, _offset: u64, _size: u8, value: u64) {
        let code = (((value as u32) << 1) | 1) as i32;
        self.status.store(code, Ordering::Release);
        self.control.request(VmAction::PowerOff);
    }
}

/// A sink of bytes written by the guest.
pub type ByteSink = Box<dyn FnMut(&[u8]) + Send>;

/// QEMU's `debugcon`: bytes written to the port go to a sink; reads return 0xE9 (the readback
/// value firmware uses to detect it).
pub struct DebugCon {
    sink: ByteSink,
}

impl std::fmt::Debug for DebugCon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DebugCon")
    }
}

impl DebugCon {
    /// A debug console writing into `sink`.
    pub fn new(sink: impl FnMut(&[u8]) + Send + 'static) -> DebugCon {
        DebugCon {
            sink: Box::new(sink),
        }
    }
}

impl IoDevice for DebugCon {
    fn name(&self) -> &str {
        "debugcon"
    }
    fn read(&mut self, _offset: u64, _size: u8) -> u64 {
        0xe9
    }
    fn write(&mut self, _offset: u64, size: u8, value: u64) {
        let b = value.to_le_bytes();
        (self.sink)(&b[..usize::from(size.min(8))]);
    }
}

/// Port 0x92: bit 1 A20 (always on here), bit 0 a reset request.
#[derive(Debug)]
pub struct Port92 {
    control: VmControl,
    value: u8,
}

impl Port92 {
    /// Port 0x92 asking `control` for a reset when bit 0 is set.
    pub fn new(control: VmControl) -> Port92 {
        Port92 {
            control,
            value: 0x02,
        }
    }
}

impl IoDevice for Port92 {
    fn name(&self) -> &str {
        "port92"
    }
    fn read(&mut self, _offset: u64, _size: u8) -> u64 {
        u64::from(self.value)
    }
    fn write(&mut self, _offset: u64, _size: u8, value: u64) {
        let v = value as u8;
        self.value = (v & !1) | 0x02;
        if v & 1 != 0 {
            self.control.request(VmAction::Reset);
        }
    }
    fn reset(&mut self) {
        self.value = 0x02;
    }
}

/// A 16550 whose interrupt reaches the guest: after every access, if an interrupt is pending
/// (IIR bit 0 clear) and MCR.OUT2 is set, a rising pulse on `gsi` through SET_IRQLINE (an ISA
/// line is edge-triggered at the PIC); the receive side is pulsed by [`UartIrqHandle::rx`].
pub struct IrqUart {
    uart: Uart16550,
    irq: UartIrqHandle,
    /// The THRE interrupt was identified by an IIR read: cleared until the next THR or IER
    /// write, as on a 16550.
    thre_acked: bool,
}

impl std::fmt::Debug for IrqUart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrqUart")
            .field("gsi", &self.irq.gsi)
            .finish()
    }
}

/// Shared with the thread that feeds the UART's input: raises the receive interrupt.
#[derive(Clone)]
pub struct UartIrqHandle {
    vm: Arc<Vm>,
    gsi: u32,
    /// IER (low 4 bits) and MCR.OUT2 (bit 7) mirrored from the device.
    enables: Arc<AtomicU8>,
    pulses: Arc<AtomicI32>,
}

impl std::fmt::Debug for UartIrqHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UartIrqHandle")
            .field("gsi", &self.gsi)
            .finish()
    }
}

/// `GSI_RAISING_PULSE` of the device model's `vm_set_gsi_irq`.
pub const GSI_RAISING_PULSE: u32 = 2;

impl UartIrqHandle {
    /// Input was pushed: pulse the line if the receive interrupt is enabled.
    pub fn rx(&self) {
        let e = self.enables.load(Ordering::Acquire);
        if e & 0x80 != 0 && e & 0x01 != 0 {
            self.pulse();
        }
    }
    fn pulse(&self) {
        self.pulses.fetch_add(1, Ordering::Relaxed);
        let _ = self.vm.set_irqline(self.gsi, GSI_RAISING_PULSE);
    }
    /// Pulses sent so far.
    pub fn pulses(&self) -> i32 {
        self.pulses.load(Ordering::Relaxed)
    }
}

impl IrqUart {
    /// `uart` with its interrupt on `gsi` of `vm` (COM1: 4).
    pub fn new(uart: Uart16550, vm: Arc<Vm>, gsi: u32) -> IrqUart {
        IrqUart {
            uart,
            irq: UartIrqHandle {
                vm,
                gsi,
                enables: Arc::new(AtomicU8::new(0)),
                pulses: Arc::new(AtomicI32::new(0)),
            },
            thre_acked: false,
        }
    }
    /// The handle for the input side.
    pub fn irq(&self) -> UartIrqHandle {
        self.irq.clone()
    }
    fn update(&mut self, was_pending: bool) {
        let lcr = self.uart.read(3, 1);
        let (ier, mcr) = if lcr & 0x80 == 0 {
            (self.uart.read(1, 1) as u8, self.uart.read(4, 1) as u8)
        } else {
            (0, self.uart.read(4, 1) as u8)
        };
        let out2 = mcr & 0x08 != 0;
        self.irq.enables.store(
            (ier & 0x0f) | if out2 { 0x80 } else { 0 },
            Ordering::Release,
        );
        let pending = self.pending();
        if out2 && pending && !was_pending {
            self.irq.pulse();
        }
    }
    /// IIR with the THRE acknowledgement applied.
    fn iir(&mut self) -> u8 {
        let v = self.uart.read(2, 1) as u8;
        if v & 0x0f == 0x02 && self.thre_acked {
            (v & 0xf0) | 0x01
        } else {
            v
        }
    }
    fn pending(&mut self) -> bool {
        self.iir() & 1 == 0
    }
}

impl IoDevice for IrqUart {
    fn name(&self) -> &str {
        self.uart.name()
    }
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        let before = self.pending();
        let v = if offset == 2 && size == 1 {
            let v = self.iir();
            if v & 0x0f == 0x02 {
                self.thre_acked = true;
            }
            u64::from(v)
        } else {
            self.uart.read(offset, size)
        };
        // Reading RBR acknowledges received data (re-evaluated: more may be queued).
        self.update(before && offset != 0);
        v
    }
    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let before = self.pending();
        let dlab = self.uart.read(3, 1) & 0x80 != 0;
        self.uart.write(offset, size, value);
        // A THR or IER write re-arms the THRE interrupt.
        let rearm = !dlab && (offset == 0 || offset == 1);
        if rearm {
            self.thre_acked = false;
        }
        self.update(before && !rearm);
    }
    fn reset(&mut self) {
        self.uart.reset();
        self.thre_acked = false;
        self.irq.enables.store(0, Ordering::Release);
    }
}

/// Re-copies a firmware image into its RAM shadow on a device-model reset.
pub struct FirmwareShadow {
    target: ShadowTarget,
    image: Arc<Vec<u8>>,
    resets: Arc<Mutex<u32>>,
}

/// Where [`FirmwareShadow`] writes the image back.
enum ShadowTarget {
    /// At `offset` of pages the caller owns.
    Pages { ram: Arc<UserPages>, offset: usize },
    /// At guest-physical `gpa` of the VM's RAM map.
    Guest { vm: Arc<Vm>, gpa: u64 },
}

impl std::fmt::Debug for FirmwareShadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = match &self.target {
            ShadowTarget::Pages { offset, .. } => *offset as u64,
            ShadowTarget::Guest { gpa, .. } => *gpa,
        };
        f.debug_struct("FirmwareShadow").field("at", &at).finish()
    }
}

impl FirmwareShadow {
    /// `image` belongs at `offset` of `ram`.
    pub fn new(ram: Arc<UserPages>, offset: usize, image: Arc<Vec<u8>>) -> FirmwareShadow {
        FirmwareShadow {
            target: ShadowTarget::Pages { ram, offset },
            image,
            resets: Arc::new(Mutex::new(0)),
        }
    }

    /// `image` belongs at guest-physical `gpa` of `vm`'s RAM (written through [`Vm::memory`]).
    pub fn in_guest(vm: Arc<Vm>, gpa: u64, image: Arc<Vec<u8>>) -> FirmwareShadow {
        FirmwareShadow {
            target: ShadowTarget::Guest { vm, gpa },
            image,
            resets: Arc::new(Mutex::new(0)),
        }
    }
}

impl IoDevice for FirmwareShadow {
    fn name(&self) -> &str {
        "firmware-shadow"
    }
    fn read(&mut self, _offset: u64, size: u8) -> u64 {
        crate::client::ones(u64::from(size))
    }
    fn write(&mut self, _offset: u64, _size: u8, _value: u64) {}
    fn reset(&mut self) {
        let _ = match &self.target {
            ShadowTarget::Pages { ram, offset } => {
                ram.write_bytes(*offset, &self.image).map_err(|_| ())
            }
            ShadowTarget::Guest { vm, gpa } => vm.memory().write(*gpa, &self.image).map_err(|_| ()),
        };
        if let Ok(mut n) = self.resets.lock() {
            *n += 1;
        }
    }
}
