//! What every virtio device and the transport share: the constants of the specification, the
//! [`VirtioDevice`] trait, and where a device's memory and interrupts come from. Below the
//! devices and the transport (which import it), so the folder imports one way.

use std::sync::{Arc, Mutex};

use super::queue::{DescChain, QueueError};
use crate::guest_memory::GuestMemory;
use crate::vm::Vm;

/// The PCI vendor id of virtio devices.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// Modern PCI device ids are `0x1040 + device type`.
pub const VIRTIO_PCI_DEVICE_BASE: u16 = 0x1040;

/// Device type of a console.
pub const TYPE_CONSOLE: u16 = 3;
/// Device type of a block device.
pub const TYPE_BLOCK: u16 = 2;
/// Device type of an entropy source.
pub const TYPE_RNG: u16 = 4;

/// `VIRTIO_F_INDIRECT_DESC` (bit 28).
pub const F_INDIRECT_DESC: u64 = 1 << 28;
/// `VIRTIO_F_RING_EVENT_IDX` (bit 29).
pub const F_RING_EVENT_IDX: u64 = 1 << 29;
/// `VIRTIO_F_VERSION_1` (bit 32).
pub const F_VERSION_1: u64 = 1 << 32;

/// Device status `ACKNOWLEDGE`.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
/// Device status `DRIVER`.
pub const STATUS_DRIVER: u8 = 2;
/// Device status `DRIVER_OK`.
pub const STATUS_DRIVER_OK: u8 = 4;
/// Device status `FEATURES_OK`.
pub const STATUS_FEATURES_OK: u8 = 8;
/// Device status `DEVICE_NEEDS_RESET`.
pub const STATUS_NEEDS_RESET: u8 = 0x40;
/// Device status `FAILED`.
pub const STATUS_FAILED: u8 = 0x80;

/// ISR bit 0: a queue interrupt.
pub const ISR_QUEUE: u8 = 1;
/// ISR bit 1: a configuration change.
pub const ISR_CONFIG: u8 = 2;

/// What [`VirtioDevice::submit`] did with a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// Served on the spot: the used element's `len` (bytes written into the device-writable
    /// buffers).
    Done(u32),
    /// Taken to be served later: the transport keeps the chain in flight until
    /// [`VirtioPci::complete`](super::VirtioPci::complete) names its head.
    Deferred,
}

/// One virtio device type behind a transport: its identity, features, configuration space and
/// request processing. The transport owns the queues and the negotiation.
pub trait VirtioDevice: Send {
    /// A short name.
    fn name(&self) -> &str;
    /// The virtio device type (2 block, 4 entropy...).
    fn device_type(&self) -> u16;
    /// The PCI class, subclass and programming interface.
    fn pci_class(&self) -> (u8, u8, u8) {
        (0xff, 0, 0)
    }
    /// The device-type feature bits offered (the transport adds VERSION_1, INDIRECT_DESC and
    /// RING_EVENT_IDX).
    fn features(&self) -> u64;
    /// The maximum size of each queue (the number of queues is the length).
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Reads the device configuration space at `offset` into `data` (bytes beyond the
    /// structure read 0).
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// A driver write to the device configuration space (ignored by default).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver set FEATURES_OK with these features (all offered).
    fn ack_features(&mut self, _features: u64) {}
    /// Back to the power-on state.
    fn reset(&mut self) {}
    /// Serves one chain of `queue`; returns the bytes written into its device-writable buffers
    /// (the used element's `len`). An error means the driver broke the protocol: the device
    /// goes to DEVICE_NEEDS_RESET.
    fn process(
        &mut self,
        queue: u16,
        chain: &DescChain,
        mem: &GuestMemory,
    ) -> Result<u32, QueueError>;
    /// Replaces the configuration image from outside (a TypeScript device): `false` if the
    /// device does not take one (the default).
    fn replace_config(&mut self, _config: &[u8]) -> bool {
        false
    }
    /// Takes one chain of `queue`: served now ([`Processed::Done`], by default through
    /// [`process`](Self::process)) or later ([`Processed::Deferred`]).
    fn submit(
        &mut self,
        queue: u16,
        chain: &DescChain,
        mem: &GuestMemory,
    ) -> Result<Processed, QueueError> {
        self.process(queue, chain, mem).map(Processed::Done)
    }
}

/// Something that reaches a VM's guest memory: the [`Vm`] itself, or a bare [`GuestMemory`]
/// (tests).
pub trait MemoryHandle: Send + Sync {
    /// The guest memory.
    fn memory(&self) -> &GuestMemory;
}

impl MemoryHandle for GuestMemory {
    fn memory(&self) -> &GuestMemory {
        self
    }
}

impl MemoryHandle for Vm {
    fn memory(&self) -> &GuestMemory {
        Vm::memory(self)
    }
}

/// Where a transport's interrupts go: an MSI(-X) message, or the level of the function's INTx
/// line (the interrupt line register's GSI).
pub trait InterruptSink: Send + Sync {
    /// Sends the message `data` to `addr`.
    fn msi(&self, addr: u64, data: u32);
    /// Sets INTx line `gsi` high (`asserted`) or low.
    fn intx(&self, gsi: u8, asserted: bool);
}

/// `GSI_SET_HIGH` of the device model's `vm_set_gsi_irq`.
pub const GSI_SET_HIGH: u32 = 0;
/// `GSI_SET_LOW`.
pub const GSI_SET_LOW: u32 = 1;

/// Interrupts of a [`Vm`]: INJECT_MSI and SET_IRQLINE.
#[derive(Debug, Clone)]
pub struct VmInterrupts(pub Arc<Vm>);

impl InterruptSink for VmInterrupts {
    fn msi(&self, addr: u64, data: u32) {
        let _ = self.0.inject_msi(addr, u64::from(data));
    }
    fn intx(&self, gsi: u8, asserted: bool) {
        let op = if asserted { GSI_SET_HIGH } else { GSI_SET_LOW };
        let _ = self.0.set_irqline(u32::from(gsi), op);
    }
}

/// One interrupt a [`RecordedInterrupts`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// An MSI message.
    Msi {
        /// Address.
        addr: u64,
        /// Data.
        data: u32,
    },
    /// An INTx level change.
    Intx {
        /// The GSI.
        gsi: u8,
        /// High or low.
        asserted: bool,
    },
}

/// An [`InterruptSink`] that records (tests, or a caller that polls).
#[derive(Debug, Default)]
pub struct RecordedInterrupts(Mutex<Vec<Interrupt>>);

impl RecordedInterrupts {
    /// Takes what was recorded so far.
    pub fn take(&self) -> Vec<Interrupt> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl InterruptSink for RecordedInterrupts {
    fn msi(&self, addr: u64, data: u32) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Interrupt::Msi { addr, data });
    }
    fn intx(&self, gsi: u8, asserted: bool) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Interrupt::Intx { gsi, asserted });
    }
}
