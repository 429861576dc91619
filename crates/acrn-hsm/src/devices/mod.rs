//! Native devices: the ones real backends need, and fast paths for TypeScript users.
//!
//! * [`Uart16550`]: a 16550A serial port (the guest prints through THR, polling LSR).
//! * [`RegisterFile`]: memory-backed registers, little-endian, any 1/2/4/8-byte access.
//! * [`PciFunction`]: the configuration space of one PCI function with sizable BARs and a
//!   capability list, including MSI ([`Msi`]) and MSI-X ([`Msix`], table and PBA in a BAR).
//! * [`virtio`]: virtio 1.x over modern PCI (split virtqueues, virtio-blk, virtio-rng).
//! * [`FnDevice`]: a device made of two closures (for callers that bring their own logic).
//! * [`ResetPort`]: the 0xCF9-style reset control register, asking the client for a
//!   device-model style reset through a [`VmControl`].

pub mod msi;
mod pci;
mod pci_error;
pub mod platform;
mod regfile;
mod uart;
pub mod virtio;

use std::fmt;

pub use msi::{Msi, MsiConfig, MsiLog, MsiSignal, MsiSink, Msix, MsixBar, MsixConfig};
pub use pci::{Bar, PciError, PciFunction};
pub use regfile::{RegisterFile, RegisterView};
pub use uart::{
    LCR_DLAB, LSR_DR, LSR_TEMT, LSR_THRE, MCR_LOOP, Uart16550, UartInput, UartOutput, UartSink,
};

use crate::client::{IoDevice, VmAction, VmControl};

/// The read half of an [`FnDevice`].
pub type ReadFn = Box<dyn FnMut(u64, u8) -> u64 + Send>;
/// The write half of an [`FnDevice`].
pub type WriteFn = Box<dyn FnMut(u64, u8, u64) + Send>;

/// A device made of closures: `read(offset, size) -> value`, `write(offset, size, value)`.
pub struct FnDevice {
    name: String,
    read: ReadFn,
    write: WriteFn,
}

impl fmt::Debug for FnDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnDevice")
            .field("name", &self.name)
            .finish()
    }
}

impl FnDevice {
    /// A device named `name` with these handlers.
    pub fn new(
        name: impl Into<String>,
        read: impl FnMut(u64, u8) -> u64 + Send + 'static,
        write: impl FnMut(u64, u8, u64) + Send + 'static,
    ) -> FnDevice {
        FnDevice {
            name: name.into(),
            read: Box::new(read),
            write: Box::new(write),
        }
    }
}

impl IoDevice for FnDevice {
    fn name(&self) -> &str {
        &self.name
    }
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        (self.read)(offset, size)
    }
    fn write(&mut self, offset: u64, size: u8, value: u64) {
        (self.write)(offset, size, value)
    }
}

/// The reset control register (port 0xCF9 on PCs), one byte: writing a value with bit 2 (the
/// reset bit) set asks for a [`VmAction::Reset`]; reads return the last value written without
/// bit 2.
#[derive(Debug)]
pub struct ResetPort {
    control: VmControl,
    value: u8,
}

impl ResetPort {
    /// A reset port asking `control` (the client's [`crate::client::IoreqClient::control`]).
    pub fn new(control: VmControl) -> ResetPort {
        ResetPort { control, value: 0 }
    }
}

impl IoDevice for ResetPort {
    fn name(&self) -> &str {
        "reset-port"
    }
    fn read(&mut self, _offset: u64, _size: u8) -> u64 {
        u64::from(self.value)
    }
    fn write(&mut self, _offset: u64, _size: u8, value: u64) {
        let v = value as u8;
        self.value = v & !0x04;
        if v & 0x04 != 0 {
            self.control.request(VmAction::Reset);
        }
    }
    fn reset(&mut self) {
        self.value = 0;
    }
}
