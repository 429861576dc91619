//! The PC platform a firmware such as SeaBIOS expects, as one piece: the devices of
//! [`crate::devices::platform`] at their PC addresses, installed on a client's bus before it
//! serves ([`Dispatcher`]) or while it serves ([`DispatcherHandle`]). `acrn-hsm run` and the
//! TypeScript `client.pcPlatform()` both use it, so a guest sees the same machine whichever side
//! serves its other devices.
//!
//! | where | device |
//! |-------|--------|
//! | PCI 00:00.0 | [`host_bridge`] (i440FX, as SeaBIOS's `qemu_detect` wants it) |
//! | 0x60, 0x64 | [`I8042`] (its reset line → [`VmAction::Reset`](crate::client::VmAction)) |
//! | 0x70–0x71 | [`Cmos`] (RTC + the memory sizes) |
//! | 0x92 | [`Port92`] |
//! | 0x3f8–0x3ff | COM1, an [`IrqUart`] on IRQ 4 |
//! | 0x402 | [`DebugCon`] |
//! | 0x510–0x511 | [`FwCfg`] (`etc/sercon-port`, `etc/boot-fail-wait`) |
//! | 0xcf9 | [`ResetPort`] |
//! | 0xf4 (default) | [`DebugExit`] |
//! | 0xfeff | [`FirmwareShadow`] (on no real port: only reset with the other devices) |

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use crate::client::{
    Bdf, BusError, DeviceId, Dispatcher, DispatcherHandle, IoDevice, PciDevice, VmControl,
};
use crate::devices::platform::{
    ByteSink, Cmos, DebugCon, DebugExit, FirmwareShadow, FwCfg, I8042, IrqUart, Port92,
    UartIrqHandle, host_bridge,
};
use crate::devices::{ResetPort, Uart16550, UartInput, UartOutput};
use crate::loader::{GuestRam, SHADOW_SIZE};
use crate::vm::Vm;

/// Where devices are added: a [`Dispatcher`] before its client serves, the
/// [`DispatcherHandle`] of a client that serves.
pub trait DeviceBus {
    /// Ports `base..base + len`.
    fn add_pio(
        &mut self,
        base: u16,
        len: u32,
        device: Box<dyn IoDevice>,
    ) -> Result<DeviceId, BusError>;
    /// A PCI function.
    fn add_pci(&mut self, bdf: Bdf, device: Box<dyn PciDevice>) -> Result<DeviceId, BusError>;
    /// Takes a device away again.
    fn remove(&mut self, id: DeviceId) -> Result<(), BusError>;
}

impl DeviceBus for Dispatcher {
    fn add_pio(
        &mut self,
        base: u16,
        len: u32,
        device: Box<dyn IoDevice>,
    ) -> Result<DeviceId, BusError> {
        Dispatcher::add_pio(self, base, len, device)
    }
    fn add_pci(&mut self, bdf: Bdf, device: Box<dyn PciDevice>) -> Result<DeviceId, BusError> {
        Dispatcher::add_pci(self, bdf, device)
    }
    fn remove(&mut self, id: DeviceId) -> Result<(), BusError> {
        Dispatcher::remove(self, id)
    }
}

impl DeviceBus for DispatcherHandle {
    fn add_pio(
        &mut self,
        base: u16,
        len: u32,
        device: Box<dyn IoDevice>,
    ) -> Result<DeviceId, BusError> {
        DispatcherHandle::add_pio(self, base, len, device)
    }
    fn add_pci(&mut self, bdf: Bdf, device: Box<dyn PciDevice>) -> Result<DeviceId, BusError> {
        DispatcherHandle::add_pci(self, bdf, device)
    }
    fn remove(&mut self, id: DeviceId) -> Result<(), BusError> {
        DispatcherHandle::remove(self, id)
    }
}

/// The machine's shape and where its output goes.
pub struct PcOptions {
    /// RAM from guest-physical 0 (CMOS 0x15–0x18, 0x30–0x35; fw_cfg's RAM size).
    pub ram_below_4g: u64,
    /// RAM from 4 GiB (CMOS 0x5b–0x5d).
    pub ram_above_4g: u64,
    /// vCPUs (CMOS 0x5f, fw_cfg's CPU count).
    pub vcpus: u16,
    /// fw_cfg `etc/sercon-port` = COM1: SeaBIOS prints on COM1 (default on).
    pub sercon: bool,
    /// fw_cfg `etc/boot-fail-wait` in ms (default 5000).
    pub boot_fail_wait_ms: u32,
    /// The `isa-debug-exit` port (default 0xf4); `None`: none.
    pub debug_exit: Option<u16>,
    /// The firmware's RAM shadow (the image's last 128 KiB, at 1 MiB − its length), restored on
    /// every device-model reset; `None`: no firmware.
    pub firmware_shadow: Option<Arc<Vec<u8>>>,
    /// Every byte COM1 transmits, as it goes (it is also kept: [`PcPlatform::serial`]).
    pub com1_sink: Option<Box<dyn FnMut(u8) + Send>>,
    /// Every write to debugcon, as it goes (also kept: [`PcPlatform::debugcon`]).
    pub debugcon_sink: Option<ByteSink>,
}

impl std::fmt::Debug for PcOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcOptions")
            .field("ram_below_4g", &self.ram_below_4g)
            .field("ram_above_4g", &self.ram_above_4g)
            .field("vcpus", &self.vcpus)
            .field("sercon", &self.sercon)
            .field("debug_exit", &self.debug_exit)
            .field("firmware", &self.firmware_shadow.as_ref().map(|s| s.len()))
            .finish_non_exhaustive()
    }
}

impl PcOptions {
    /// A PC with `ram` (from [`GuestRam::map`]) and `vcpus`, no firmware shadow.
    pub fn for_ram(ram: &GuestRam, vcpus: u16) -> PcOptions {
        PcOptions::sized(ram.low_len(), ram.high_len(), vcpus)
    }

    /// A PC shaped after what `vm` has mapped: the RAM segment at guest-physical 0 (and those
    /// contiguous with it) below 4 GiB, every segment from 4 GiB above; the firmware shadow is
    /// the last 128 KiB of a segment that ends at 4 GiB (the ROM [`crate::loader::load_firmware`]
    /// maps), if there is one.
    pub fn from_vm(vm: &Vm) -> PcOptions {
        const FOUR_GIB: u64 = 1 << 32;
        let segments = vm.memory().segments();
        let mut below = 0u64;
        for &(gpa, len) in &segments {
            if gpa == below && gpa < FOUR_GIB && gpa + len <= FOUR_GIB - SHADOW_SIZE as u64 {
                below = gpa + len;
            }
        }
        let above = segments
            .iter()
            .filter(|&&(gpa, _)| gpa >= FOUR_GIB)
            .map(|&(_, len)| len)
            .sum();
        let mut options = PcOptions::sized(below, above, vm.vcpu_num());
        if let Some(&(gpa, len)) = segments.iter().find(|&&(gpa, len)| gpa + len == FOUR_GIB) {
            let n = len.min(SHADOW_SIZE as u64);
            let mut shadow = vec![0u8; n as usize];
            if vm.memory().read(gpa + len - n, &mut shadow).is_ok() {
                options.firmware_shadow = Some(Arc::new(shadow));
            }
        }
        options
    }

    fn sized(ram_below_4g: u64, ram_above_4g: u64, vcpus: u16) -> PcOptions {
        PcOptions {
            ram_below_4g,
            ram_above_4g,
            vcpus,
            sercon: true,
            boot_fail_wait_ms: 5000,
            debug_exit: Some(0xf4),
            firmware_shadow: None,
            com1_sink: None,
            debugcon_sink: None,
        }
    }
}

/// The PC installed on a bus: its outputs and state.
#[derive(Debug)]
pub struct PcPlatform {
    serial: UartOutput,
    serial_in: UartInput,
    com1_irq: UartIrqHandle,
    exit_status: Arc<AtomicI32>,
    kbc_resets: Arc<AtomicI32>,
    debugcon: Arc<Mutex<Vec<u8>>>,
    ids: Vec<DeviceId>,
}

impl PcPlatform {
    /// Adds the PC's devices (see the module) to `bus`. COM1 raises IRQ 4 of `vm`; the i8042,
    /// port 0x92, 0xcf9 and `isa-debug-exit` ask `control` (the serving client's) for resets and
    /// the power-off. On an error (a range already taken) the devices already added are removed
    /// again.
    pub fn install(
        bus: &mut impl DeviceBus,
        vm: &Arc<Vm>,
        control: &VmControl,
        options: PcOptions,
    ) -> Result<PcPlatform, BusError> {
        let mut ids = Vec::new();
        match Self::install_into(bus, vm, control, options, &mut ids) {
            Ok(pc) => Ok(pc),
            Err(e) => {
                for id in ids.into_iter().rev() {
                    let _ = bus.remove(id);
                }
                Err(e)
            }
        }
    }

    fn install_into(
        bus: &mut impl DeviceBus,
        vm: &Arc<Vm>,
        control: &VmControl,
        options: PcOptions,
        ids: &mut Vec<DeviceId>,
    ) -> Result<PcPlatform, BusError> {
        let PcOptions {
            ram_below_4g,
            ram_above_4g,
            vcpus,
            sercon,
            boot_fail_wait_ms,
            debug_exit,
            firmware_shadow,
            com1_sink,
            debugcon_sink,
        } = options;
        ids.push(bus.add_pci(Bdf::new(0, 0, 0), host_bridge())?);
        ids.push(bus.add_pio(
            0x70,
            2,
            Box::new(Cmos::new(ram_below_4g, ram_above_4g, vcpus)),
        )?);
        let mut fw_cfg = FwCfg::new(ram_below_4g + ram_above_4g, vcpus);
        if sercon {
            fw_cfg = fw_cfg.with_file("etc/sercon-port", 0x3f8u16.to_le_bytes().to_vec());
        }
        let fw_cfg = fw_cfg.with_file(
            "etc/boot-fail-wait",
            boot_fail_wait_ms.to_le_bytes().to_vec(),
        );
        ids.push(bus.add_pio(0x510, 2, Box::new(fw_cfg))?);
        let kbc = I8042::new(control.clone());
        let kbc_resets = kbc.resets();
        ids.push(bus.add_pio(0x60, 5, Box::new(kbc))?);
        ids.push(bus.add_pio(0x92, 1, Box::new(Port92::new(control.clone())))?);
        ids.push(bus.add_pio(0xcf9, 1, Box::new(ResetPort::new(control.clone())))?);
        let mut uart = Uart16550::new().with_name("com1");
        if let Some(sink) = com1_sink {
            uart = uart.with_sink(sink);
        }
        let (serial, serial_in) = (uart.output(), uart.input());
        let com1 = IrqUart::new(uart, vm.clone(), 4);
        let com1_irq = com1.irq();
        ids.push(bus.add_pio(0x3f8, 8, Box::new(com1))?);
        let exit = DebugExit::new(control.clone());
        let exit_status = exit.status();
        if let Some(port) = debug_exit {
            ids.push(bus.add_pio(port, 1, Box::new(exit))?);
        }
        let debugcon: Arc<Mutex<Vec<u8>>> = Arc::default();
        let kept = debugcon.clone();
        let mut sink = debugcon_sink;
        ids.push(bus.add_pio(
            0x402,
            1,
            Box::new(DebugCon::new(move |b| {
                if let Ok(mut v) = kept.lock() {
                    v.extend_from_slice(b);
                }
                if let Some(s) = sink.as_mut() {
                    s(b);
                }
            })),
        )?);
        if let Some(image) = firmware_shadow {
            let gpa = 0x10_0000 - image.len() as u64;
            ids.push(bus.add_pio(
                0xfeff,
                1,
                Box::new(FirmwareShadow::in_guest(vm.clone(), gpa, image)),
            )?);
        }
        Ok(PcPlatform {
            serial,
            serial_in,
            com1_irq,
            exit_status,
            kbc_resets,
            debugcon,
            ids: ids.clone(),
        })
    }

    /// Everything COM1 transmitted (take it to consume it).
    pub fn serial(&self) -> &UartOutput {
        &self.serial
    }

    /// Gives COM1 bytes to receive and raises its receive interrupt.
    pub fn serial_input(&self, bytes: &[u8]) {
        self.serial_in.push(bytes);
        self.com1_irq.rx();
    }

    /// COM1's input queue and interrupt, for a thread that feeds it.
    pub fn serial_feed(&self) -> (UartInput, UartIrqHandle) {
        (self.serial_in.clone(), self.com1_irq.clone())
    }

    /// COM1 interrupt pulses sent.
    pub fn uart_irqs(&self) -> i32 {
        self.com1_irq.pulses()
    }

    /// The `isa-debug-exit` status `(v << 1) | 1` once the guest wrote `v`.
    pub fn exit_status(&self) -> Option<i32> {
        let st = self.exit_status.load(Ordering::Acquire);
        (st >= 0).then_some(st)
    }

    /// Resets asked through the i8042 (the others are counted by the client).
    pub fn kbc_resets(&self) -> u64 {
        u64::try_from(self.kbc_resets.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Everything written to debugcon.
    pub fn debugcon(&self) -> Vec<u8> {
        self.debugcon.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The devices' ids on the bus, in installation order.
    pub fn device_ids(&self) -> &[DeviceId] {
        &self.ids
    }
}
