//! Dispatch of claimed requests to devices by address: PIO and MMIO ranges in ordered maps
//! (`BTreeMap<base, (len, device)>`, looked up with `range(..=addr).next_back()`, O(log n)), and
//! PCI configuration space by bus/device/function.
//!
//! Devices are registered with `&mut` methods before the client runs, or through a
//! [`DispatcherHandle`] from any thread while it serves (see there: the change is checked and
//! reserved at once, and applied by the serving thread before its next scan, so the request
//! path takes no lock). Overlapping and empty ranges are refused with a [`BusError`]. Devices
//! are removed the same two ways ([`Dispatcher::remove`], [`DispatcherHandle::remove`]). At
//! run time:
//!
//! * an access fully inside a registered range goes to its device, with the offset from the
//!   range's base;
//! * an access nobody claims is answered as the ACRN device model does: reads return all ones by
//!   size, writes are ignored, and the request is still completed;
//! * a malformed request (unknown type, size not 1/2/4/8, PIO or PCI size 8, an address range
//!   that overflows, a PCI address out of range) is completed the same way and reported as a
//!   [`FaultReport`] (counted, and given to the optional fault callback);
//! * a device that panics does not take the client down: the panic is caught, reads return all
//!   ones, and a [`FaultReason::DevicePanic`] is reported.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::protocol::{Bdf, Kind, Request};

/// A device on the PIO or MMIO bus. `offset` is relative to the base of the range the device was
/// registered at, and `offset + size` never leaves that range. `size` is 1, 2, 4 or 8 (8 only for
/// MMIO). Reads return the value in the low `size` bytes (higher bits are masked off).
pub trait IoDevice: Send {
    /// A short name, for statistics and errors.
    fn name(&self) -> &str {
        "device"
    }
    /// A guest read of `size` bytes at `offset`.
    fn read(&mut self, offset: u64, size: u8) -> u64;
    /// A guest write of `size` bytes at `offset`.
    fn write(&mut self, offset: u64, size: u8, value: u64);
    /// Back to the power-on state (called by the device-model style reset).
    fn reset(&mut self) {}
}

/// The configuration space of one PCI function. `reg` is the byte offset in the function's
/// 4 KiB configuration space (`reg + size <= 4096`), `size` is 1, 2 or 4.
pub trait PciDevice: Send {
    /// A short name, for statistics and errors.
    fn name(&self) -> &str {
        "pci-function"
    }
    /// A configuration read.
    fn cfg_read(&mut self, reg: u32, size: u8) -> u32;
    /// A configuration write.
    fn cfg_write(&mut self, reg: u32, size: u8, value: u32);
    /// Back to the power-on state.
    fn reset(&mut self) {}
    /// The BAR windows the function decodes now: each BAR that is programmed and enabled by
    /// the command register (memory or I/O space bit), as the ACRN device model's `pci_emul`
    /// registers them. A dispatcher that has handlers for the function's BARs
    /// ([`Dispatcher::add_pci_with_bars`]) routes each window to its handler, and moves or
    /// drops the route after every configuration write. None by default.
    fn bar_windows(&self) -> Vec<BarWindow> {
        Vec::new()
    }
}

/// A decoded BAR of a PCI function ([`PciDevice::bar_windows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarWindow {
    /// The BAR (0..=5).
    pub index: u8,
    /// Memory or I/O space.
    pub space: AddressSpace,
    /// The programmed address.
    pub base: u64,
    /// The size in bytes.
    pub size: u64,
}

/// Who serves a BAR ([`Dispatcher::add_pci_with_bars`]).
pub enum BarHandler {
    /// A native device, called by the dispatcher.
    Native(Box<dyn IoDevice>),
    /// A deferred device of that name (answered through the batch interface, as
    /// [`Dispatcher::add_deferred`]).
    Deferred(String),
}

impl fmt::Debug for BarHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarHandler::Native(d) => write!(f, "Native({})", d.name()),
            BarHandler::Deferred(n) => write!(f, "Deferred({n})"),
        }
    }
}

/// The route of one BAR to its handler.
#[derive(Debug, Clone, Copy)]
struct BarRoute {
    index: u8,
    handler: DeviceId,
    at: Option<(AddressSpace, u64, u64)>,
}

/// PIO or MMIO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressSpace {
    /// Port I/O (ports 0..=0xffff).
    Pio,
    /// Memory-mapped I/O (the 64-bit guest-physical space).
    Mmio,
}

impl fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressSpace::Pio => "PIO",
            AddressSpace::Mmio => "MMIO",
        })
    }
}

/// A registration refused by the [`Dispatcher`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// `len == 0`.
    #[error("{space} range at {base:#x} for {device:?} is empty")]
    Empty {
        /// The space.
        space: AddressSpace,
        /// The base.
        base: u64,
        /// The device being registered.
        device: String,
    },
    /// `base + len` does not fit in the space (64 bits for MMIO, 0x10000 for PIO).
    #[error("{space} range {base:#x}+{len:#x} for {device:?} runs past the end of the space")]
    OutOfSpace {
        /// The space.
        space: AddressSpace,
        /// The base.
        base: u64,
        /// The length.
        len: u64,
        /// The device being registered.
        device: String,
    },
    /// The range overlaps one already registered.
    #[error(
        "{space} range {base:#x}+{len:#x} for {device:?} overlaps {existing:?} at {existing_base:#x}+{existing_len:#x}"
    )]
    Overlap {
        /// The space.
        space: AddressSpace,
        /// The base.
        base: u64,
        /// The length.
        len: u64,
        /// The device being registered.
        device: String,
        /// The device already there.
        existing: String,
        /// Its base.
        existing_base: u64,
        /// Its length.
        existing_len: u64,
    },
    /// The range covers the PCI configuration ports (0xCF8, 0xCFC..0xCFF): the hypervisor's
    /// vPCI and HSM handle them, a device model never sees them as PIO (serve PCI functions
    /// with [`Dispatcher::add_pci`]).
    #[error(
        "PIO range {base:#x}+{len:#x} for {device:?} covers the PCI configuration ports (0xcf8, 0xcfc..0xcff): the hypervisor and HSM handle them; register a PCI function instead"
    )]
    Reserved {
        /// The base.
        base: u64,
        /// The length.
        len: u64,
        /// The device being registered.
        device: String,
    },
    /// A function is already registered at that address.
    #[error("PCI function {bdf} for {device:?} is already taken by {existing:?}")]
    PciTaken {
        /// The function.
        bdf: Bdf,
        /// The device being registered.
        device: String,
        /// The device already there.
        existing: String,
    },
    /// No device with that id is registered (never was, or was removed).
    #[error("no device {} is registered", .0.0)]
    NoSuchDevice(DeviceId),
    /// The device is a BAR handler: it goes with its PCI function (remove the function).
    #[error("{device:?} (device {}) is a BAR handler: remove its PCI function", .id.0)]
    NotRemovable {
        /// The device.
        id: DeviceId,
        /// Its name.
        device: String,
    },
    /// A deferred device added while the client serves with
    /// [`IoreqClient::run`](super::IoreqClient::run), which has nobody to answer it (serve
    /// with `next_batch`).
    #[error(
        "deferred device {device:?} refused: the client serves with run(), which cannot answer deferred devices (use next_batch)"
    )]
    DeferredUnserved {
        /// The device being registered.
        device: String,
    },
}

/// Why a request was malformed or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultReason {
    /// `type` is not PORTIO, MMIO or PCICFG.
    UnknownType(u32),
    /// `direction` is neither read (0) nor write (1); the request is completed as a write
    /// (nothing written back).
    UnknownDirection(u32),
    /// `size` is not 1, 2, 4 or 8 (or is 8 for PIO / PCICFG).
    InvalidSize(u64),
    /// `address + size` overflows the space (64 bits, or port 0xffff).
    AddressOverflow,
    /// PCICFG with bus > 255, dev > 31, func > 7 or `reg + size > 4096`.
    InvalidPciAddress,
    /// The device's handler panicked.
    DevicePanic,
}

impl fmt::Display for FaultReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultReason::UnknownType(t) => write!(f, "unknown request type {t}"),
            FaultReason::UnknownDirection(d) => write!(f, "unknown direction {d}"),
            FaultReason::InvalidSize(s) => write!(f, "invalid access size {s}"),
            FaultReason::AddressOverflow => f.write_str("address range overflows"),
            FaultReason::InvalidPciAddress => f.write_str("PCI address out of range"),
            FaultReason::DevicePanic => f.write_str("device handler panicked"),
        }
    }
}

/// A fault: the request (as read from the slot) and the reason. The request was still completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultReport {
    /// The request.
    pub request: Request,
    /// Why.
    pub reason: FaultReason,
}

/// Where a request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// To this device.
    Device(DeviceId),
    /// To a deferred device ([`Dispatcher::add_deferred`]): nothing was called, the caller of
    /// [`IoreqClient::next_batch`](super::IoreqClient::next_batch) answers it; `offset` from the
    /// range's base (the register, for PCI).
    Deferred(DeviceId, u64),
    /// Nobody claims it: reads all ones, writes ignored.
    Unclaimed,
    /// Malformed or the handler failed: reads all ones.
    Fault(FaultReason),
}

/// The result of dispatching one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The value to write back for a read (masked to the size; all ones by size when unclaimed
    /// or faulty).
    pub value: u64,
    /// Where it went.
    pub target: Target,
}

/// A registered device (index into the dispatcher's device table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub usize);

/// Live per-device counters, readable from any thread while the client runs.
#[derive(Debug, Default)]
// On lines of its own (128 bytes: a cache-line pair): touched on every request by the serving
// thread or a vCPU, it must share no line with another allocation (docs/performance.md, "False
// sharing").
#[repr(align(128))]
pub struct DeviceCounters {
    name: String,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl DeviceCounters {
    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Reads served so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
    /// Writes served so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
    fn count(&self, is_read: bool) {
        let c = if is_read { &self.reads } else { &self.writes };
        // One writer (the serving thread): a load and a store, no locked read-modify-write.
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

enum DeviceBox {
    Io(Box<dyn IoDevice>),
    Pci(Box<dyn PciDevice>),
    /// Answered outside the dispatcher (by JavaScript, through the batch interface).
    Deferred,
    /// Removed: no map points at it any more.
    Removed,
}

/// Where a deferred device sits ([`Dispatcher::add_deferred`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferredAt {
    /// A PIO or MMIO range.
    Range(AddressSpace, u64, u64),
    /// A PCI function's configuration space.
    Pci(Bdf),
}

struct Entry {
    dev: DeviceBox,
    counters: Arc<DeviceCounters>,
}

/// A callback for faults.
pub type FaultHook = Box<dyn FnMut(&FaultReport) + Send>;

/// The three address maps.
#[derive(Default)]
struct Maps {
    pio: BTreeMap<u64, (u64, DeviceId)>,
    mmio: BTreeMap<u64, (u64, DeviceId)>,
    pci: BTreeMap<Bdf, DeviceId>,
    /// The range each space's last lookup found (base, length, device): a guest mostly hits the
    /// same device again. Cleared by every change to the maps (`space_mut`, `remove_ids`).
    last_hit: [Cell<Option<(u64, u64, DeviceId)>>; 2],
}

impl Maps {
    fn space(&self, space: AddressSpace) -> &BTreeMap<u64, (u64, DeviceId)> {
        match space {
            AddressSpace::Pio => &self.pio,
            AddressSpace::Mmio => &self.mmio,
        }
    }

    fn space_mut(&mut self, space: AddressSpace) -> &mut BTreeMap<u64, (u64, DeviceId)> {
        self.last_hit = Default::default();
        match space {
            AddressSpace::Pio => &mut self.pio,
            AddressSpace::Mmio => &mut self.mmio,
        }
    }

    /// Whether `[base, base + len)` of `space` is valid and claimed by nobody.
    fn window_free(&self, space: AddressSpace, base: u64, len: u64) -> bool {
        let Some(last) = base.checked_add(len - 1) else {
            return false;
        };
        if space == AddressSpace::Pio && (last > 0xffff || (base <= 0xcff && last >= 0xcf8)) {
            return false;
        }
        // The last range starting at or before our last byte overlaps iff it reaches our base.
        self.space(space)
            .range(..=last)
            .next_back()
            .is_none_or(|(&b, &(l, _))| b + (l - 1) < base)
    }

    /// Drops every route to one of `ids`.
    fn remove_ids(&mut self, ids: &[DeviceId]) {
        self.last_hit = Default::default();
        self.pio.retain(|_, (_, d)| !ids.contains(d));
        self.mmio.retain(|_, (_, d)| !ids.contains(d));
        self.pci.retain(|_, d| !ids.contains(d));
    }
}

/// What a device id is, for removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    Device,
    BarHandler,
    Removed,
}

/// A registration or removal checked by a [`DispatcherHandle`], waiting for the serving thread.
enum Change {
    Range {
        id: DeviceId,
        space: AddressSpace,
        base: u64,
        len: u64,
        dev: DeviceBox,
    },
    Pci {
        id: DeviceId,
        bdf: Bdf,
        dev: DeviceBox,
        bars: Vec<(u8, DeviceId, DeviceBox)>,
    },
    Remove {
        ids: Vec<DeviceId>,
    },
}

/// The registration state every registration is checked against: the maps as they are once
/// every queued change is applied, the names and kinds of every id handed out, and the queue.
#[derive(Default)]
struct RegState {
    maps: Maps,
    names: Vec<String>,
    kinds: Vec<SlotKind>,
    deferred: Vec<bool>,
    /// The BAR handler ids of each function with BARs.
    bar_handlers: BTreeMap<DeviceId, Vec<DeviceId>>,
    /// The client serves with `run` (no deferred devices may come).
    native_only: bool,
    queue: Vec<Change>,
}

impl RegState {
    fn reserve(&mut self, name: String, kind: SlotKind, deferred: bool) -> DeviceId {
        let id = DeviceId(self.names.len());
        self.names.push(name);
        self.kinds.push(kind);
        self.deferred.push(deferred);
        id
    }

    fn check_deferred(&self, deferred: bool, name: &str) -> Result<(), BusError> {
        if deferred && self.native_only {
            return Err(BusError::DeferredUnserved {
                device: name.to_string(),
            });
        }
        Ok(())
    }

    /// Checks and reserves a range: the id, and the range in the maps.
    fn reserve_range(
        &mut self,
        space: AddressSpace,
        base: u64,
        len: u64,
        name: String,
        deferred: bool,
    ) -> Result<DeviceId, BusError> {
        check_range(&self.maps, &self.names, space, base, len, &name)?;
        self.check_deferred(deferred, &name)?;
        let id = self.reserve(name, SlotKind::Device, deferred);
        self.maps.space_mut(space).insert(base, (len, id));
        Ok(id)
    }

    /// Checks and reserves a function and its BAR handlers (`(index, name, deferred)`).
    fn reserve_pci(
        &mut self,
        bdf: Bdf,
        name: String,
        deferred: bool,
        bars: &[(u8, String, bool)],
    ) -> Result<(DeviceId, Vec<DeviceId>), BusError> {
        if let Some(id) = self.maps.pci.get(&bdf) {
            return Err(BusError::PciTaken {
                bdf,
                device: name,
                existing: self.names[id.0].clone(),
            });
        }
        self.check_deferred(deferred, &name)?;
        for (_, n, d) in bars {
            self.check_deferred(*d, n)?;
        }
        let id = self.reserve(name, SlotKind::Device, deferred);
        self.maps.pci.insert(bdf, id);
        let handlers: Vec<DeviceId> = bars
            .iter()
            .map(|(_, n, d)| self.reserve(n.clone(), SlotKind::BarHandler, *d))
            .collect();
        if !bars.is_empty() {
            self.bar_handlers.insert(id, handlers.clone());
        }
        Ok((id, handlers))
    }

    /// Checks and reserves a removal: the ids that go (the device, and a function's BAR
    /// handlers), gone from the maps.
    fn reserve_remove(&mut self, id: DeviceId) -> Result<Vec<DeviceId>, BusError> {
        match self.kinds.get(id.0) {
            None | Some(SlotKind::Removed) => return Err(BusError::NoSuchDevice(id)),
            Some(SlotKind::BarHandler) => {
                return Err(BusError::NotRemovable {
                    id,
                    device: self.names[id.0].clone(),
                });
            }
            Some(SlotKind::Device) => {}
        }
        let mut ids = vec![id];
        ids.extend(self.bar_handlers.remove(&id).unwrap_or_default());
        for i in &ids {
            self.kinds[i.0] = SlotKind::Removed;
            self.deferred[i.0] = false;
        }
        self.maps.remove_ids(&ids);
        Ok(ids)
    }
}

/// The registration state shared by a [`Dispatcher`] and its [`DispatcherHandle`]s. `pending`
/// says the queue is not empty: the serving thread loads it once per scan, and takes the lock
/// only when it is set.
#[derive(Default)]
struct Registry {
    pending: AtomicBool,
    state: Mutex<RegState>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, RegState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Checks a PIO/MMIO registration of `[base, base + len)` against `maps`.
fn check_range(
    maps: &Maps,
    names: &[String],
    space: AddressSpace,
    base: u64,
    len: u64,
    name: &str,
) -> Result<(), BusError> {
    let name = || name.to_string();
    if len == 0 {
        return Err(BusError::Empty {
            space,
            base,
            device: name(),
        });
    }
    // Last byte must be below 0x10000 (PIO) or representable (MMIO: base + len - 1 <= MAX).
    let fits = match (space, base.checked_add(len - 1)) {
        (_, None) => false,
        (AddressSpace::Pio, Some(l)) => l < 0x1_0000,
        (AddressSpace::Mmio, Some(_)) => true,
    };
    if !fits {
        return Err(BusError::OutOfSpace {
            space,
            base,
            len,
            device: name(),
        });
    }
    let end_incl = base + (len - 1);
    let covers = |a: u64, b: u64| base <= b && a <= end_incl;
    if space == AddressSpace::Pio && (covers(0xcf8, 0xcf8) || covers(0xcfc, 0xcff)) {
        return Err(BusError::Reserved {
            base,
            len,
            device: name(),
        });
    }
    let map = maps.space(space);
    // The range starting at or before `base`, and the first starting inside ours.
    let before = map.range(..=base).next_back();
    let inside = map.range(base..=end_incl).next();
    for (&b, &(l, id)) in before.into_iter().chain(inside) {
        let other_last = b + (l - 1);
        if b <= end_incl && base <= other_last {
            return Err(BusError::Overlap {
                space,
                base,
                len,
                device: name(),
                existing: names[id.0].clone(),
                existing_base: b,
                existing_len: l,
            });
        }
    }
    Ok(())
}

/// Registers and removes devices of a [`Dispatcher`] from any thread, while its client serves
/// ([`Dispatcher::handle`], [`ClientHandle::bus`](super::ClientHandle::bus)). Cheap to clone.
///
/// Each call is checked at once against the registrations as they will be when every change
/// before it is applied (overlaps, a taken PCI function, the BAR windows routed now) and
/// returns its result (the new [`DeviceId`]s, or the [`BusError`]); the change is queued and
/// the serving thread applies it before its next scan: every request claimed by a scan that
/// starts after the call returned sees it, and requests already handed to a device are
/// completed as they were dispatched (exactly once). A removed device's range is unclaimed
/// (reads all ones, writes ignored) and its device is dropped on the serving thread. In
/// blocking mode the serving thread applies changes when ATTACH next returns, before it scans;
/// a client that is not serving applies them when it next runs (or on
/// [`Dispatcher::apply_changes`]).
#[derive(Clone)]
pub struct DispatcherHandle {
    reg: Arc<Registry>,
}

impl fmt::Debug for DispatcherHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatcherHandle")
            .field("pending", &self.pending())
            .finish()
    }
}

impl DispatcherHandle {
    fn queue(&self, st: &mut RegState, change: Change) {
        st.queue.push(change);
        // Under the lock: the serving thread clears the flag under the same lock.
        self.reg.pending.store(true, Ordering::Release);
    }

    /// [`Dispatcher::add_range`], live.
    pub fn add_range(
        &self,
        space: AddressSpace,
        base: u64,
        len: u64,
        device: Box<dyn IoDevice>,
    ) -> Result<DeviceId, BusError> {
        let mut st = self.reg.lock();
        let id = st.reserve_range(space, base, len, device.name().to_string(), false)?;
        let dev = DeviceBox::Io(device);
        self.queue(
            &mut st,
            Change::Range {
                id,
                space,
                base,
                len,
                dev,
            },
        );
        Ok(id)
    }

    /// [`Dispatcher::add_pio`], live.
    pub fn add_pio(
        &self,
        base: u16,
        len: u32,
        device: Box<dyn IoDevice>,
    ) -> Result<DeviceId, BusError> {
        self.add_range(AddressSpace::Pio, u64::from(base), u64::from(len), device)
    }

    /// [`Dispatcher::add_mmio`], live.
    pub fn add_mmio(
        &self,
        base: u64,
        len: u64,
        device: Box<dyn IoDevice>,
    ) -> Result<DeviceId, BusError> {
        self.add_range(AddressSpace::Mmio, base, len, device)
    }

    /// [`Dispatcher::add_deferred`], live. Refused ([`BusError::DeferredUnserved`]) while the
    /// client serves with `run`.
    pub fn add_deferred(&self, at: DeferredAt, name: &str) -> Result<DeviceId, BusError> {
        let mut st = self.reg.lock();
        let (id, change) = match at {
            DeferredAt::Range(space, base, len) => {
                let id = st.reserve_range(space, base, len, name.to_string(), true)?;
                let dev = DeviceBox::Deferred;
                let change = Change::Range {
                    id,
                    space,
                    base,
                    len,
                    dev,
                };
                (id, change)
            }
            DeferredAt::Pci(bdf) => {
                let (id, _) = st.reserve_pci(bdf, name.to_string(), true, &[])?;
                let change = Change::Pci {
                    id,
                    bdf,
                    dev: DeviceBox::Deferred,
                    bars: Vec::new(),
                };
                (id, change)
            }
        };
        self.queue(&mut st, change);
        Ok(id)
    }

    /// [`Dispatcher::add_pci`], live.
    pub fn add_pci(&self, bdf: Bdf, device: Box<dyn PciDevice>) -> Result<DeviceId, BusError> {
        self.add_pci_with_bars(bdf, device, Vec::new())
            .map(|(id, _)| id)
    }

    /// [`Dispatcher::add_pci_with_bars`], live.
    pub fn add_pci_with_bars(
        &self,
        bdf: Bdf,
        device: Box<dyn PciDevice>,
        bars: Vec<(u8, BarHandler)>,
    ) -> Result<(DeviceId, Vec<DeviceId>), BusError> {
        let name = device.name().to_string();
        let shape = bar_shape(&name, &bars);
        let mut st = self.reg.lock();
        let (id, handlers) = st.reserve_pci(bdf, name, false, &shape)?;
        let bars = bars
            .into_iter()
            .zip(&handlers)
            .map(|((index, h), &hid)| (index, hid, h.into_box()))
            .collect();
        self.queue(
            &mut st,
            Change::Pci {
                id,
                bdf,
                dev: DeviceBox::Pci(device),
                bars,
            },
        );
        Ok((id, handlers))
    }

    /// [`Dispatcher::remove`], live: the device's range (and a PCI function's BAR windows) is
    /// unclaimed from the next scan on; a request already handed to it completes as
    /// dispatched.
    pub fn remove(&self, id: DeviceId) -> Result<(), BusError> {
        let mut st = self.reg.lock();
        let ids = st.reserve_remove(id)?;
        self.queue(&mut st, Change::Remove { ids });
        Ok(())
    }

    /// Whether changes wait for the serving thread.
    pub fn pending(&self) -> bool {
        self.reg.pending.load(Ordering::Acquire)
    }
}

impl BarHandler {
    fn into_box(self) -> DeviceBox {
        match self {
            BarHandler::Native(d) => DeviceBox::Io(d),
            BarHandler::Deferred(_) => DeviceBox::Deferred,
        }
    }
}

/// The names and kinds of BAR handlers: `(index, name, deferred)`.
fn bar_shape(name: &str, bars: &[(u8, BarHandler)]) -> Vec<(u8, String, bool)> {
    bars.iter()
        .map(|(index, h)| match h {
            BarHandler::Native(_) => (*index, format!("{name}.bar{index}"), false),
            BarHandler::Deferred(n) => (*index, n.clone(), true),
        })
        .collect()
}

/// The device table and the three address maps.
#[derive(Default)]
pub struct Dispatcher {
    devices: Vec<Entry>,
    /// The maps requests are looked up in (the serving thread's; the registry holds the same
    /// once its queue is applied).
    maps: Maps,
    /// The BAR handlers of PCI functions, by the function's id ([`Dispatcher::add_pci_with_bars`]).
    bar_routes: BTreeMap<DeviceId, Vec<BarRoute>>,
    reg: Arc<Registry>,
    on_fault: Option<FaultHook>,
    /// The handler's start and end ([`Dispatcher::dispatch_timed`]).
    handler_ns: (u64, u64),
}

/// The space of a [`DeviceRange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeSpace {
    /// Port I/O.
    Pio,
    /// Memory-mapped I/O.
    Mmio,
    /// A PCI function's configuration space.
    Pci,
}

/// A registered device and where it is (the trace header's device table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRange {
    /// Its id.
    pub id: DeviceId,
    /// Its name.
    pub name: String,
    /// Its space.
    pub space: RangeSpace,
    /// First address (PCI: `bdf << 16`, as in traces).
    pub base: u64,
    /// Length in bytes (PCI: 4096).
    pub len: u64,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("devices", &self.devices.len())
            .field("pio", &self.maps.pio.len())
            .field("mmio", &self.maps.mmio.len())
            .field("pci", &self.maps.pci.len())
            .finish()
    }
}

/// All ones in the low `size` bytes (all 64 bits for sizes of 8 and more or invalid sizes).
#[inline]
pub fn ones(size: u64) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

impl Dispatcher {
    /// An empty dispatcher: every access unclaimed.
    pub fn new() -> Dispatcher {
        Dispatcher::default()
    }

    /// Registers `device` for ports `base..base + len`.
    pub fn add_pio(
        &mut self,
        base: u16,
        len: u32,
        device: Box<dyn IoDevice>,
    ) -> Result<DeviceId, BusError> {
        self.add_range(AddressSpace::Pio, u64::from(base), u64::from(len), device)
    }

    /// Registers `device` for guest-physical `base..base + len`.
    pub fn add_mmio(
        &mut self,
        base: u64,
        len: u64,
        device: Box<dyn IoDevice>,
    ) -> Result<DeviceId, BusError> {
        self.add_range(AddressSpace::Mmio, base, len, device)
    }

    /// Registers `device` at `base..base + len` of `space`.
    pub fn add_range(
        &mut self,
        space: AddressSpace,
        base: u64,
        len: u64,
        device: Box<dyn IoDevice>,
    ) -> Result<DeviceId, BusError> {
        let reg = Arc::clone(&self.reg);
        let mut st = reg.lock();
        self.drain(&mut st);
        let id = st.reserve_range(space, base, len, device.name().to_string(), false)?;
        self.install_range(&st, id, space, base, len, DeviceBox::Io(device));
        Ok(id)
    }

    /// Registers a *deferred* device called `name` at `at`: requests for it are not handled by
    /// the dispatcher but handed to the caller of
    /// [`IoreqClient::next_batch`](super::IoreqClient::next_batch), which answers them (the
    /// JavaScript devices of the bindings). The same overlap and containment rules apply.
    pub fn add_deferred(&mut self, at: DeferredAt, name: &str) -> Result<DeviceId, BusError> {
        let id = self.handle().add_deferred(at, name)?;
        self.apply_changes();
        Ok(id)
    }

    /// Whether any deferred device is registered (queued changes included).
    pub fn has_deferred(&self) -> bool {
        self.reg.lock().deferred.iter().any(|&d| d)
    }

    /// A handle registering and removing devices from other threads while this dispatcher
    /// serves ([`DispatcherHandle`]).
    pub fn handle(&self) -> DispatcherHandle {
        DispatcherHandle {
            reg: Arc::clone(&self.reg),
        }
    }

    /// Applies the changes queued by [`DispatcherHandle`]s; returns whether there were any.
    /// One atomic load when there are none (the serving thread calls it before each scan).
    #[inline]
    pub fn apply_changes(&mut self) -> bool {
        if !self.reg.pending.load(Ordering::Acquire) {
            return false;
        }
        let reg = Arc::clone(&self.reg);
        let mut st = reg.lock();
        self.drain(&mut st);
        true
    }

    /// Marks the dispatcher as served by `run` (`on`: refused, returning `false`, if a deferred
    /// device is registered; while set, deferred devices are refused) or not.
    pub(crate) fn serve_native_only(&mut self, on: bool) -> bool {
        let reg = Arc::clone(&self.reg);
        let mut st = reg.lock();
        self.drain(&mut st);
        if on && st.deferred.iter().any(|&d| d) {
            return false;
        }
        st.native_only = on;
        true
    }

    /// Applies the queued changes (the registry's lock held: after this the serving maps are
    /// the registry's).
    fn drain(&mut self, st: &mut RegState) {
        let queue = std::mem::take(&mut st.queue);
        self.reg.pending.store(false, Ordering::Relaxed);
        for change in queue {
            match change {
                Change::Range {
                    id,
                    space,
                    base,
                    len,
                    dev,
                } => self.install_range(st, id, space, base, len, dev),
                Change::Pci { id, bdf, dev, bars } => self.install_pci(st, id, bdf, dev, bars),
                Change::Remove { ids } => {
                    self.maps.remove_ids(&ids);
                    for id in &ids {
                        self.bar_routes.remove(id);
                        if let Some(e) = self.devices.get_mut(id.0) {
                            // A device whose drop panics is gone all the same.
                            let dev = std::mem::replace(&mut e.dev, DeviceBox::Removed);
                            let _ = catch_unwind(AssertUnwindSafe(move || drop(dev)));
                        }
                    }
                }
            }
        }
    }

    /// Puts a reserved range's device in the table and the serving map.
    fn install_range(
        &mut self,
        st: &RegState,
        id: DeviceId,
        space: AddressSpace,
        base: u64,
        len: u64,
        dev: DeviceBox,
    ) {
        self.push(st, id, dev);
        self.maps.space_mut(space).insert(base, (len, id));
    }

    /// Puts a reserved function (and its BAR handlers) in the table and the serving map.
    fn install_pci(
        &mut self,
        st: &mut RegState,
        id: DeviceId,
        bdf: Bdf,
        dev: DeviceBox,
        bars: Vec<(u8, DeviceId, DeviceBox)>,
    ) {
        self.push(st, id, dev);
        self.maps.pci.insert(bdf, id);
        if bars.is_empty() {
            return;
        }
        let routes = bars
            .into_iter()
            .map(|(index, hid, h)| {
                self.push(st, hid, h);
                BarRoute {
                    index,
                    handler: hid,
                    at: None,
                }
            })
            .collect();
        self.bar_routes.insert(id, routes);
        self.update_bars_locked(st, id);
    }

    /// Registers the configuration space of function `bdf`.
    pub fn add_pci(&mut self, bdf: Bdf, device: Box<dyn PciDevice>) -> Result<DeviceId, BusError> {
        self.add_pci_with_bars(bdf, device, Vec::new())
            .map(|(id, _)| id)
    }

    /// Registers function `bdf` with a handler for some of its BARs: `(bar index, handler)`.
    /// Whenever the guest programs a BAR and enables decoding (command register), the BAR's
    /// range is routed to its handler (offsets relative to the BAR); when it moves or decoding
    /// is disabled, the route moves or goes away. A window that would overlap another device,
    /// leave the port space or cover 0xCF8/0xCFC is not routed (its accesses are unclaimed).
    /// Returns the function's id and each handler's, in the order given.
    pub fn add_pci_with_bars(
        &mut self,
        bdf: Bdf,
        device: Box<dyn PciDevice>,
        bars: Vec<(u8, BarHandler)>,
    ) -> Result<(DeviceId, Vec<DeviceId>), BusError> {
        let r = self.handle().add_pci_with_bars(bdf, device, bars)?;
        self.apply_changes();
        Ok(r)
    }

    /// Removes device `id` (a PCI function with its BAR handlers): its range is unclaimed
    /// from now on. Errors: no such device, or a BAR handler (remove its function).
    pub fn remove(&mut self, id: DeviceId) -> Result<(), BusError> {
        self.handle().remove(id)?;
        self.apply_changes();
        Ok(())
    }

    /// The window BAR `index` of function `id` is routed to now, if any.
    pub fn bar_route(&self, id: DeviceId, index: u8) -> Option<(AddressSpace, u64, u64)> {
        self.bar_routes
            .get(&id)?
            .iter()
            .find(|r| r.index == index)?
            .at
    }

    /// Re-reads the BAR windows of function `id` and moves its routes to match (under the
    /// registry's lock: a cold path, after configuration writes to functions with BARs).
    fn update_bars(&mut self, id: DeviceId) {
        let reg = Arc::clone(&self.reg);
        let mut st = reg.lock();
        self.drain(&mut st);
        self.update_bars_locked(&mut st, id);
    }

    fn update_bars_locked(&mut self, st: &mut RegState, id: DeviceId) {
        let Some(mut routes) = self.bar_routes.remove(&id) else {
            return;
        };
        let windows = match &self.devices[id.0].dev {
            DeviceBox::Pci(d) => {
                catch_unwind(AssertUnwindSafe(|| d.bar_windows())).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        for r in &mut routes {
            let want = windows
                .iter()
                .find(|w| w.index == r.index && w.size > 0)
                .map(|w| (w.space, w.base, w.size));
            if want == r.at {
                continue;
            }
            if let Some((space, base, _)) = r.at.take() {
                for map in [self.maps.space_mut(space), st.maps.space_mut(space)] {
                    if map.get(&base).is_some_and(|&(_, h)| h == r.handler) {
                        map.remove(&base);
                    }
                }
            }
            if let Some((space, base, len)) = want {
                if st.maps.window_free(space, base, len) {
                    self.maps.space_mut(space).insert(base, (len, r.handler));
                    st.maps.space_mut(space).insert(base, (len, r.handler));
                    r.at = Some((space, base, len));
                }
            }
        }
        self.bar_routes.insert(id, routes);
    }

    /// Puts device `id` (reserved in the registry, in order) in the table.
    fn push(&mut self, st: &RegState, id: DeviceId, dev: DeviceBox) {
        // Ids are reserved in the order changes are applied, so `id` is the next slot; fill a
        // gap defensively rather than misnumber.
        while self.devices.len() < id.0 {
            let n = self.devices.len();
            self.devices.push(Entry {
                dev: DeviceBox::Removed,
                counters: Arc::new(DeviceCounters {
                    name: st.names.get(n).cloned().unwrap_or_default(),
                    ..Default::default()
                }),
            });
        }
        let entry = Entry {
            dev,
            counters: Arc::new(DeviceCounters {
                name: st.names.get(id.0).cloned().unwrap_or_default(),
                ..Default::default()
            }),
        };
        match self.devices.get_mut(id.0) {
            Some(e) => *e = entry,
            None => self.devices.push(entry),
        }
    }

    /// Installs the fault callback (called on the client thread, after counting).
    pub fn set_fault_hook(&mut self, hook: impl FnMut(&FaultReport) + Send + 'static) {
        self.on_fault = Some(Box::new(hook));
    }

    /// The live counters of every device, in registration order (index = [`DeviceId`]).
    pub fn counters(&self) -> Vec<Arc<DeviceCounters>> {
        self.devices.iter().map(|e| e.counters.clone()).collect()
    }

    /// Every registered device with its range, in registration order.
    pub fn ranges(&self) -> Vec<DeviceRange> {
        let mut out = Vec::with_capacity(self.devices.len());
        let name = |id: DeviceId| self.devices[id.0].counters.name.clone();
        for (space, map) in [
            (RangeSpace::Pio, &self.maps.pio),
            (RangeSpace::Mmio, &self.maps.mmio),
        ] {
            for (&base, &(len, id)) in map {
                out.push(DeviceRange {
                    id,
                    name: name(id),
                    space,
                    base,
                    len,
                });
            }
        }
        for (bdf, &id) in &self.maps.pci {
            out.push(DeviceRange {
                id,
                name: name(id),
                space: RangeSpace::Pci,
                base: (u64::from(bdf.bus) << 24)
                    | (u64::from(bdf.dev) << 19)
                    | (u64::from(bdf.func) << 16),
                len: 4096,
            });
        }
        out.sort_by_key(|r| r.id);
        out
    }

    /// Number of registered devices (removed ones not counted).
    pub fn len(&self) -> usize {
        self.devices
            .iter()
            .filter(|e| !matches!(e.dev, DeviceBox::Removed))
            .count()
    }

    /// No device registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which device (if any) serves `[addr, addr + size)` of `space`.
    pub fn lookup(&self, space: AddressSpace, addr: u64, size: u64) -> Option<(DeviceId, u64)> {
        let hit = &self.maps.last_hit[space as usize];
        let (base, len, id) = match hit.get() {
            Some((b, l, id)) if addr >= b && addr - b < l => (b, l, id),
            _ => {
                let (&b, &(l, id)) = self.maps.space(space).range(..=addr).next_back()?;
                hit.set(Some((b, l, id)));
                (b, l, id)
            }
        };
        let off = addr - base;
        // Fully inside: off + size <= len (no overflow: off < 2^64, size <= 8, checked).
        match off.checked_add(size) {
            Some(end) if end <= len => Some((id, off)),
            _ => None,
        }
    }

    /// Resets every device ([`IoDevice::reset`], [`PciDevice::reset`]).
    pub fn reset_devices(&mut self) {
        for e in &mut self.devices {
            let r = catch_unwind(AssertUnwindSafe(|| match &mut e.dev {
                DeviceBox::Io(d) => d.reset(),
                DeviceBox::Pci(d) => d.reset(),
                DeviceBox::Deferred | DeviceBox::Removed => {}
            }));
            // A device whose reset panics stays as it is; the reset of the others goes on.
            drop(r);
        }
        // Reset BARs decode nothing: their routes go.
        let ids: Vec<DeviceId> = self.bar_routes.keys().copied().collect();
        for id in ids {
            self.update_bars(id);
        }
    }

    /// Validates `req` and hands it to its device. Never panics, whatever the request holds.
    pub fn dispatch(&mut self, req: &Request) -> Outcome {
        self.dispatch_with::<false>(req)
    }

    /// [`dispatch`](Self::dispatch), also returning when the device's handler was called and
    /// returned, as recorder stamps (`trace::stamp`; 0, 0 when no handler ran).
    pub(crate) fn dispatch_timed(&mut self, req: &Request) -> (Outcome, u64, u64) {
        self.handler_ns = (0, 0);
        let o = self.dispatch_with::<true>(req);
        (o, self.handler_ns.0, self.handler_ns.1)
    }

    #[inline]
    fn dispatch_with<const TIMED: bool>(&mut self, req: &Request) -> Outcome {
        let o = self.dispatch_inner::<TIMED>(req);
        if let Target::Fault(reason) = o.target {
            if let Some(h) = self.on_fault.as_mut() {
                let report = FaultReport {
                    request: *req,
                    reason,
                };
                let _ = catch_unwind(AssertUnwindSafe(|| h(&report)));
            }
        }
        o
    }

    #[inline]
    fn dispatch_inner<const TIMED: bool>(&mut self, req: &Request) -> Outcome {
        let size = req.size;
        if let Err(reason) = validate(req) {
            // Unknown type: the size means nothing either; answer all 64 bits.
            let value = match reason {
                FaultReason::UnknownType(_) => u64::MAX,
                _ => ones(size),
            };
            return Outcome {
                value,
                target: Target::Fault(reason),
            };
        }
        match self.locate(req) {
            Some((id, offset)) => self.call::<TIMED>(id, offset, req),
            None => Outcome {
                value: ones(size),
                target: Target::Unclaimed,
            },
        }
    }

    /// The device serving a valid request and the offset in its range.
    #[inline]
    fn locate(&self, req: &Request) -> Option<(DeviceId, u64)> {
        match req.kind {
            Kind::Pio => self.lookup(AddressSpace::Pio, req.address, req.size),
            Kind::Mmio => self.lookup(AddressSpace::Mmio, req.address, req.size),
            _ => self
                .maps
                .pci
                .get(&req.bdf)
                .map(|&id| (id, u64::from(req.reg))),
        }
    }

    /// Calls device `id` (a deferred one is not called: the request is handed out).
    #[inline]
    fn call<const TIMED: bool>(&mut self, id: DeviceId, offset: u64, req: &Request) -> Outcome {
        let size = req.size;
        let entry = &mut self.devices[id.0];
        if matches!(entry.dev, DeviceBox::Removed) {
            // No map points at a removed device; answered as nobody's all the same.
            return Outcome {
                value: ones(size),
                target: Target::Unclaimed,
            };
        }
        if matches!(entry.dev, DeviceBox::Deferred) {
            entry.counters.count(req.is_read);
            return Outcome {
                value: 0,
                target: Target::Deferred(id, offset),
            };
        }
        let sz = size as u8;
        let is_read = req.is_read;
        let value = req.value;
        let t0 = if TIMED { crate::trace::stamp() } else { 0 };
        let r = catch_unwind(AssertUnwindSafe(|| match &mut entry.dev {
            DeviceBox::Io(d) => {
                if is_read {
                    d.read(offset, sz)
                } else {
                    d.write(offset, sz, value);
                    0
                }
            }
            DeviceBox::Pci(d) => {
                if is_read {
                    u64::from(d.cfg_read(offset as u32, sz))
                } else {
                    d.cfg_write(offset as u32, sz, value as u32);
                    0
                }
            }
            DeviceBox::Deferred | DeviceBox::Removed => 0,
        }));
        if TIMED {
            self.handler_ns = (t0, crate::trace::stamp());
        }
        if !is_read && req.kind == Kind::PciCfg && self.bar_routes.contains_key(&id) {
            self.update_bars(id);
        }
        match r {
            Ok(v) => {
                self.devices[id.0].counters.count(is_read);
                Outcome {
                    value: v & ones(size),
                    target: Target::Device(id),
                }
            }
            Err(_) => Outcome {
                value: ones(size),
                target: Target::Fault(FaultReason::DevicePanic),
            },
        }
    }
}

/// Checks what the slot says before anything is looked up: the type, the size for the type, the
/// direction, an address range that does not overflow its space, a PCI address in range.
#[inline]
fn validate(req: &Request) -> Result<(), FaultReason> {
    let size = req.size;
    let max = match req.kind {
        Kind::Unknown(t) => return Err(FaultReason::UnknownType(t)),
        Kind::Mmio => 8,
        Kind::Pio | Kind::PciCfg => 4,
    };
    if !matches!(size, 1 | 2 | 4 | 8) || size > max {
        return Err(FaultReason::InvalidSize(size));
    }
    if req.direction > 1 {
        return Err(FaultReason::UnknownDirection(req.direction));
    }
    match req.kind {
        // Ports 0..=0xffff: the access must end at 0x10000 at most.
        Kind::Pio => match req.address.checked_add(size) {
            Some(end) if end <= 0x1_0000 => Ok(()),
            _ => Err(FaultReason::AddressOverflow),
        },
        // address + size == 2^64 exactly is fine: the last byte is u64::MAX.
        Kind::Mmio => match req.address.checked_add(size - 1) {
            Some(_) => Ok(()),
            None => Err(FaultReason::AddressOverflow),
        },
        _ => {
            let (b, d, f) = req.raw_bdf;
            if b > 255 || d > 31 || f > 7 || u64::from(req.reg) + size > 4096 {
                Err(FaultReason::InvalidPciAddress)
            } else {
                Ok(())
            }
        }
    }
}
