//! The modern virtio-pci transport (virtio 1.x §4.1), in front of one [`VirtioDevice`].
//!
//! Configuration space: a type-0 header ([`PciFunction`]: vendor 0x1af4, device
//! `0x1040 + type`, revision 1, INTA), the capabilities-list bit of the status register, the
//! capability pointer at 0x34 and this list:
//!
//! | at | capability | content |
//! |---|---|---|
//! | 0x40 | vendor 0x09, `cfg_type` 1 | common configuration: BAR 4, offset 0x0000, 0x38 bytes |
//! | 0x50 | vendor 0x09, `cfg_type` 2 | notifications: BAR 4, offset 0x3000, `notify_off_multiplier` 4 |
//! | 0x64 | vendor 0x09, `cfg_type` 3 | ISR status: BAR 4, offset 0x1000 |
//! | 0x74 | vendor 0x09, `cfg_type` 4 | device configuration: BAR 4, offset 0x2000 |
//! | 0x84 | vendor 0x09, `cfg_type` 5 | PCI configuration access (`bar`, `offset`, `length`, `pci_cfg_data` writable) |
//! | 0x98 | MSI-X (0x11) | one vector per queue + the configuration vector; table at BAR 4 + 0x4000, PBA at + 0x5000 |
//!
//! BAR 4 (32-bit memory, 32 KiB) is served by [`VirtioBar`], which shares the transport's
//! state with the [`VirtioPci`] configuration space (one mutex; both run on the ioreq client's
//! thread). Interrupts: MSI-X messages when MSI-X is enabled, else the INTx level (ISR status
//! not 0, INTx not disabled by the command register) on the interrupt line's GSI, through an
//! [`InterruptSink`].
//!
//! Deferred chains: a device whose [`VirtioDevice::submit`] answers [`Processed::Deferred`]
//! leaves the chain *in flight*: the transport remembers its head (per queue, with the bytes
//! the chain can take), queues a [`DeferredChain`] for [`VirtioPci::take_deferred`] and calls
//! the deferred hook. [`VirtioPci::complete`] later returns it to the driver, in any order: the
//! used element, a release fence, the used idx, and the interrupt unless the driver suppressed
//! it. A reset drops every chain in flight and starts a new epoch: a completion of an older
//! epoch is dropped, never written into the reset queue; a head not in flight is refused
//! ([`CompleteError`]), so no chain is completed twice.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::device::{
    F_INDIRECT_DESC, F_RING_EVENT_IDX, F_VERSION_1, ISR_CONFIG, ISR_QUEUE, InterruptSink,
    MemoryHandle, Processed, STATUS_DRIVER_OK, STATUS_FEATURES_OK, STATUS_NEEDS_RESET,
    VIRTIO_PCI_DEVICE_BASE, VIRTIO_VENDOR, VirtioDevice,
};
use super::queue::{DescChain, NO_VECTOR, Queue, QueueError};
use crate::client::{BarHandler, BarWindow, IoDevice, PciDevice};
use crate::devices::{Bar, PciFunction};

/// The BAR holding every virtio structure.
pub const VIRTIO_BAR: u8 = 4;
/// Its size.
pub const BAR_SIZE: u32 = 0x8000;
/// Offset of the ISR status byte in the BAR.
pub const ISR_OFFSET: u64 = 0x1000;
/// Offset of the device configuration in the BAR.
pub const DEVICE_CFG_OFFSET: u64 = 0x2000;
/// Offset of the notification area in the BAR.
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// `notify_off_multiplier`: queue `q` is notified at `NOTIFY_OFFSET + 4 * q`.
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
/// Offset of the MSI-X table in the BAR.
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
/// Offset of the MSI-X pending-bit array in the BAR.
pub const MSIX_PBA_OFFSET: u64 = 0x5000;
/// At most this many MSI-X vectors (queues + 1 are offered).
pub const MSIX_VECTORS: usize = 64;

/// `cfg_type` of the common configuration capability.
pub const CAP_COMMON: u8 = 1;
/// `cfg_type` of the notification capability.
pub const CAP_NOTIFY: u8 = 2;
/// `cfg_type` of the ISR capability.
pub const CAP_ISR: u8 = 3;
/// `cfg_type` of the device configuration capability.
pub const CAP_DEVICE: u8 = 4;
/// `cfg_type` of the PCI configuration access capability.
pub const CAP_PCI_CFG: u8 = 5;

const COMMON_LEN: u64 = 0x38;
const CAPS_START: usize = 0x40;
const CAP_PCI_AT: usize = 0x84;
const CAP_MSIX_AT: usize = 0x98;
const CAPS_END: usize = 0xa4;
const PCI_CFG_DATA: usize = CAP_PCI_AT + 16;
const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_FUNCTION_MASK: u16 = 1 << 14;
const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// A notification serves at most this many chains (a driver that keeps adding from another
/// vCPU cannot hold the client forever; the rest waits for the next notification).
const MAX_CHAINS_PER_NOTIFY: usize = 1 << 16;

/// Counters of one transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioStats {
    /// Queue notifications received.
    pub notifies: u64,
    /// Chains completed.
    pub chains: u64,
    /// Interrupts sent (MSI-X messages and INTx assertions).
    pub interrupts: u64,
    /// Times the device went to DEVICE_NEEDS_RESET.
    pub needs_reset: u64,
}

struct Inner {
    pci: PciFunction,
    dev: Box<dyn VirtioDevice>,
    mem: Arc<dyn MemoryHandle>,
    irq: Arc<dyn InterruptSink>,
    queues: Vec<Queue>,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    config_generation: u8,
    queue_select: u16,
    config_msix_vector: u16,
    isr: u8,
    intx_level: Option<u8>,
    cfg_bar: u8,
    cfg_offset: u32,
    cfg_length: u32,
    cfg_data: u32,
    msix_control: u16,
    msix_table: Vec<[u32; 4]>,
    msix_pending: Vec<bool>,
    last_error: Option<QueueError>,
    stats: VirtioStats,
    /// Per queue: the heads of deferred chains in flight, with their writable bytes.
    in_flight: Vec<HashMap<u16, u32>>,
    /// Deferred chains not taken yet.
    deferred: VecDeque<DeferredChain>,
    /// Bumped by every reset.
    epoch: u64,
    /// Called when chains were deferred.
    hook: Option<DeferredHook>,
    /// Told where the queue notifications are to be taken ([`VirtioPci::set_notify_hook`]).
    notify_hook: Option<NotifyHook>,
    /// The notification area the hook was last told of.
    notify_at: Option<u64>,
}

/// What [`VirtioPci::set_deferred_hook`] takes.
pub type DeferredHook = Arc<dyn Fn() + Send + Sync>;

/// What [`VirtioPci::set_notify_hook`] takes: called with the guest-physical address of the
/// notification area (`BAR 4 + NOTIFY_OFFSET`; queue `q` at `+ NOTIFY_OFF_MULTIPLIER * q`)
/// while the driver may notify there, or `None` when it may not any more, and the number of
/// queues.
pub type NotifyHook = Arc<dyn Fn(Option<u64>, u16) + Send + Sync>;

/// A chain a deferred device took, waiting for [`VirtioPci::complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferredChain {
    /// The reset epoch it belongs to (passed back to [`VirtioPci::complete`]).
    pub epoch: u64,
    /// The queue.
    pub queue: u16,
    /// The chain (its head and buffers, checked to lie in RAM).
    pub chain: DescChain,
}

/// A completion [`VirtioPci::complete`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompleteError {
    /// The device has no such queue.
    #[error("no queue {queue}")]
    NoSuchQueue {
        /// The queue.
        queue: u16,
    },
    /// The head is not in flight on the queue (never deferred, or completed already).
    #[error("head {head} of queue {queue} is not in flight (completed already?)")]
    NotInFlight {
        /// The queue.
        queue: u16,
        /// The head.
        head: u16,
    },
}

/// The modern virtio-pci transport of one device: its configuration space (a [`PciDevice`]).
/// Clones share the same device; [`VirtioPci::bar`] gives the BAR's handler.
#[derive(Clone)]
pub struct VirtioPci {
    name: String,
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for VirtioPci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioPci")
            .field("name", &self.name)
            .field("status", &self.status())
            .finish()
    }
}

/// BAR 4 of a [`VirtioPci`]: common configuration, ISR, device configuration, notifications,
/// MSI-X table and PBA (an [`IoDevice`], offsets relative to the BAR).
pub struct VirtioBar {
    name: String,
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for VirtioBar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioBar")
            .field("name", &self.name)
            .finish()
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl VirtioPci {
    /// The transport of `dev`, reaching guest memory through `mem` and raising interrupts
    /// through `irq`.
    pub fn new(
        dev: Box<dyn VirtioDevice>,
        mem: Arc<dyn MemoryHandle>,
        irq: Arc<dyn InterruptSink>,
    ) -> VirtioPci {
        let (class, subclass, prog_if) = dev.pci_class();
        let name = format!("virtio-{}", dev.name());
        // Infallible: BAR 4 is free and the size is a power of two above 16.
        let pci = PciFunction::new(VIRTIO_VENDOR, VIRTIO_PCI_DEVICE_BASE + dev.device_type())
            .with_name(name.clone())
            .with_class(class, subclass, prog_if, 1)
            .with_subsystem(VIRTIO_VENDOR, 0x1100)
            .with_interrupt_pin(1);
        let pci = match pci.clone().with_bar(
            usize::from(VIRTIO_BAR),
            Bar::Mem32 {
                size: BAR_SIZE,
                prefetchable: false,
            },
        ) {
            Ok(p) => p,
            Err(_) => pci,
        };
        let queues: Vec<Queue> = dev
            .queue_max_sizes()
            .into_iter()
            .take(MSIX_VECTORS - 1)
            .map(Queue::new)
            .collect();
        let vectors = queues.len() + 1;
        VirtioPci {
            name,
            inner: Arc::new(Mutex::new(Inner {
                pci,
                dev,
                mem,
                irq,
                queues,
                device_feature_select: 0,
                driver_feature_select: 0,
                driver_features: 0,
                status: 0,
                config_generation: 0,
                queue_select: 0,
                config_msix_vector: NO_VECTOR,
                isr: 0,
                intx_level: None,
                cfg_bar: 0,
                cfg_offset: 0,
                cfg_length: 0,
                cfg_data: 0,
                msix_control: 0,
                msix_table: vec![[0, 0, 0, 1]; vectors],
                msix_pending: vec![false; vectors],
                last_error: None,
                stats: VirtioStats::default(),
                in_flight: vec![HashMap::new(); vectors - 1],
                deferred: VecDeque::new(),
                epoch: 0,
                hook: None,
                notify_hook: None,
                notify_at: None,
            })),
        }
    }

    /// The handler of BAR 4 (shares this transport's state).
    pub fn bar(&self) -> VirtioBar {
        VirtioBar {
            name: format!("{}.bar{VIRTIO_BAR}", self.name),
            inner: self.inner.clone(),
        }
    }

    /// What [`Dispatcher::add_pci_with_bars`](crate::client::Dispatcher::add_pci_with_bars)
    /// takes: the configuration space and BAR 4's native handler.
    pub fn into_parts(self) -> (Box<dyn PciDevice>, Vec<(u8, BarHandler)>) {
        let bar = self.bar();
        (
            Box::new(self),
            vec![(VIRTIO_BAR, BarHandler::Native(Box::new(bar)))],
        )
    }

    /// The number of queues.
    pub fn num_queues(&self) -> u16 {
        lock(&self.inner).queues.len() as u16
    }

    /// The device status register.
    pub fn status(&self) -> u8 {
        lock(&self.inner).status
    }

    /// The features the driver accepted (valid once FEATURES_OK is set).
    pub fn driver_features(&self) -> u64 {
        lock(&self.inner).driver_features
    }

    /// Why the device went to DEVICE_NEEDS_RESET last, if it did.
    pub fn last_error(&self) -> Option<QueueError> {
        lock(&self.inner).last_error.clone()
    }

    /// The counters.
    pub fn stats(&self) -> VirtioStats {
        lock(&self.inner).stats
    }

    /// Called (on the serving thread, with the transport locked: it must not call back into
    /// it) whenever chains were deferred, e.g. to wake the server that takes them.
    pub fn set_deferred_hook(&self, hook: DeferredHook) {
        lock(&self.inner).hook = Some(hook);
    }

    /// Installs (or, with `None`, removes) the hook told where queue notifications arrive: the
    /// notification area's address once the driver set DRIVER_OK with BAR 4 decoded, its new
    /// address when the BAR moves, `None` when the device is reset, BAR 4 stops being decoded
    /// or the hook is replaced (the old hook is told `None` first). It is where an ioeventfd
    /// per queue belongs (virtio 1.x §4.1.4.4; QEMU starts its ioeventfds on DRIVER_OK as
    /// well, `virtio_pci_common_write`). Called with the transport locked, from the thread
    /// that made the change: it must not call back into the transport.
    pub fn set_notify_hook(&self, hook: Option<NotifyHook>) {
        let mut g = lock(&self.inner);
        if let (Some(old), Some(_)) = (g.notify_hook.take(), g.notify_at.take()) {
            old(None, g.queues.len() as u16);
        }
        g.notify_hook = hook;
        g.sync_notify();
    }

    /// Where the notification area is while the driver may notify (DRIVER_OK, BAR 4 decoded),
    /// whether or not a hook is installed.
    pub fn notify_area(&self) -> Option<u64> {
        lock(&self.inner).notify_wanted()
    }

    /// A notification of `queue` that arrived elsewhere than through the BAR (an ioeventfd):
    /// served exactly as a write to its notify address.
    pub fn notify_queue(&self, queue: u16) {
        lock(&self.inner).notify(usize::from(queue));
    }

    /// Takes the deferred chains queued so far, in the order the driver made them available.
    pub fn take_deferred(&self) -> Vec<DeferredChain> {
        lock(&self.inner).deferred.drain(..).collect()
    }

    /// Deferred chains in flight (taken or not, not completed).
    pub fn in_flight(&self) -> usize {
        lock(&self.inner).in_flight.iter().map(HashMap::len).sum()
    }

    /// The current reset epoch.
    pub fn epoch(&self) -> u64 {
        lock(&self.inner).epoch
    }

    /// Completes deferred chain `head` of `queue` with `written` bytes written into its
    /// device-writable buffers (clamped to what they hold): the used element, a release fence,
    /// the used idx, then the interrupt unless the driver suppressed it (flags or event index).
    /// `Ok(true)`: returned to the driver; `Ok(false)`: dropped (a chain of an older `epoch`
    /// than the last reset, or the device needs a reset or the queue was disabled). A head not
    /// in flight is refused: a chain is never completed twice.
    pub fn complete(
        &self,
        epoch: u64,
        queue: u16,
        head: u16,
        written: u32,
    ) -> Result<bool, CompleteError> {
        lock(&self.inner).complete(epoch, queue, head, written)
    }

    /// The device's configuration changed (`config`: its new image, for a device that takes
    /// one, [`VirtioDevice::replace_config`]): `config_generation` moves on and, once the driver
    /// set DRIVER_OK, a configuration-change interrupt (ISR bit 1 / the configuration vector).
    /// `false` if the device does not take a new image (nothing changed then).
    pub fn config_changed(&self, config: Option<&[u8]>) -> bool {
        let mut g = lock(&self.inner);
        if let Some(c) = config {
            if !g.dev.replace_config(c) {
                return false;
            }
        }
        g.config_generation = g.config_generation.wrapping_add(1);
        if g.status & STATUS_DRIVER_OK != 0 && g.status & STATUS_NEEDS_RESET == 0 {
            g.signal_config();
        }
        true
    }

    /// Calls `f` with the device (e.g. to read a device's own counters).
    pub fn with_device<R>(&self, f: impl FnOnce(&mut dyn VirtioDevice) -> R) -> R {
        f(lock(&self.inner).dev.as_mut())
    }
}

impl Inner {
    fn offered(&self) -> u64 {
        self.dev.features() | F_VERSION_1 | F_INDIRECT_DESC | F_RING_EVENT_IDX
    }

    fn vectors(&self) -> usize {
        self.msix_table.len()
    }

    fn msix_enabled(&self) -> bool {
        self.msix_control & MSIX_ENABLE != 0
    }

    /// The virtio reset (device status 0): queues, negotiation, ISR, the device.
    fn reset_device(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        // Requests in flight are dropped: their completions belong to the old epoch.
        for f in &mut self.in_flight {
            f.clear();
        }
        self.deferred.clear();
        self.epoch = self.epoch.wrapping_add(1);
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.queue_select = 0;
        self.config_msix_vector = NO_VECTOR;
        self.isr = 0;
        self.last_error = None;
        self.update_intx();
        self.dev.reset();
        self.sync_notify();
    }

    /// Where the notification area should be announced now.
    fn notify_wanted(&self) -> Option<u64> {
        if self.status & STATUS_DRIVER_OK == 0 {
            return None;
        }
        self.pci
            .bar_windows()
            .into_iter()
            .find(|w| w.index == VIRTIO_BAR && w.size >= u64::from(BAR_SIZE))
            .map(|w| w.base + NOTIFY_OFFSET)
    }

    /// Tells the notify hook when the notification area appears, moves or goes.
    fn sync_notify(&mut self) {
        let Some(hook) = self.notify_hook.clone() else {
            return;
        };
        let want = self.notify_wanted();
        if want != self.notify_at {
            let n = self.queues.len() as u16;
            if self.notify_at.is_some() {
                hook(None, n);
            }
            self.notify_at = want;
            if want.is_some() {
                hook(want, n);
            }
        }
    }

    /// The platform reset: the virtio reset and the PCI state (header, caps, MSI-X).
    fn reset_all(&mut self) {
        self.pci.reset();
        self.reset_device();
        self.cfg_bar = 0;
        self.cfg_offset = 0;
        self.cfg_length = 0;
        self.cfg_data = 0;
        self.msix_control = 0;
        for e in &mut self.msix_table {
            *e = [0, 0, 0, 1];
        }
        for p in &mut self.msix_pending {
            *p = false;
        }
        self.intx_level = None;
        self.sync_notify();
    }

    // ---- interrupts ----

    fn update_intx(&mut self) {
        let cmd = self.pci.command();
        let want = self.isr != 0 && !self.msix_enabled() && cmd & COMMAND_INTX_DISABLE == 0;
        let line = self.pci.cfg_read(0x3c, 1) as u8;
        match (want, self.intx_level) {
            (true, None) if line != 0 && line != 0xff => {
                self.irq.intx(line, true);
                self.intx_level = Some(line);
                self.stats.interrupts += 1;
            }
            (false, Some(l)) => {
                self.irq.intx(l, false);
                self.intx_level = None;
            }
            _ => {}
        }
    }

    fn send_vector(&mut self, v: u16) {
        let v = usize::from(v);
        if v >= self.vectors() {
            return;
        }
        let e = self.msix_table[v];
        if self.msix_control & MSIX_FUNCTION_MASK != 0 || e[3] & 1 != 0 {
            self.msix_pending[v] = true;
            return;
        }
        self.irq
            .msi(u64::from(e[0]) | (u64::from(e[1]) << 32), e[2]);
        self.stats.interrupts += 1;
    }

    fn deliver_pending(&mut self) {
        if !self.msix_enabled() || self.msix_control & MSIX_FUNCTION_MASK != 0 {
            return;
        }
        for v in 0..self.vectors() {
            if self.msix_pending[v] && self.msix_table[v][3] & 1 == 0 {
                self.msix_pending[v] = false;
                let e = self.msix_table[v];
                self.irq
                    .msi(u64::from(e[0]) | (u64::from(e[1]) << 32), e[2]);
                self.stats.interrupts += 1;
            }
        }
    }

    fn signal_queue(&mut self, q: usize) {
        if self.msix_enabled() {
            let v = self.queues[q].msix_vector;
            self.send_vector(v);
        } else {
            self.isr |= ISR_QUEUE;
            self.update_intx();
        }
    }

    fn signal_config(&mut self) {
        self.isr |= ISR_CONFIG;
        if self.msix_enabled() {
            let v = self.config_msix_vector;
            self.send_vector(v);
        } else {
            self.update_intx();
        }
    }

    /// The driver broke the protocol: DEVICE_NEEDS_RESET and a configuration interrupt.
    fn fail(&mut self, e: QueueError) {
        if self.status & STATUS_NEEDS_RESET == 0 {
            self.status |= STATUS_NEEDS_RESET;
            self.stats.needs_reset += 1;
            self.last_error = Some(e);
            self.signal_config();
        }
    }

    // ---- queues ----

    fn process_queue(&mut self, q: usize) {
        if self.status & STATUS_DRIVER_OK == 0
            || self.status & STATUS_NEEDS_RESET != 0
            || q >= self.queues.len()
            || !self.queues[q].ready
        {
            return;
        }
        let mem = self.mem.clone();
        let m = mem.memory();
        let mut served = 0usize;
        let mut deferred = 0usize;
        let result: Result<(), QueueError> = (|| {
            // Bounded also when the ring looks non-empty and then empty again (a driver
            // flipping its idx from another vCPU).
            for _ in 0..MAX_CHAINS_PER_NOTIFY {
                let Some(chain) = self.queues[q].pop(m)? else {
                    // Tell the driver where to notify next, then look again (it may have
                    // added an entry before it saw the new avail_event).
                    self.queues[q].set_avail_event(m)?;
                    if self.queues[q].has_pending(m)? {
                        continue;
                    }
                    break;
                };
                if self.in_flight[q].contains_key(&chain.head) {
                    return Err(QueueError::HeadInFlight { head: chain.head });
                }
                match self.dev.submit(q as u16, &chain, m)? {
                    Processed::Done(len) => {
                        self.queues[q].add_used(m, chain.head, len)?;
                        served += 1;
                        self.stats.chains += 1;
                    }
                    Processed::Deferred => {
                        let room = u32::try_from(chain.writable_len()).unwrap_or(u32::MAX);
                        self.in_flight[q].insert(chain.head, room);
                        self.deferred.push_back(DeferredChain {
                            epoch: self.epoch,
                            queue: q as u16,
                            chain,
                        });
                        deferred += 1;
                    }
                }
            }
            Ok(())
        })();
        if deferred > 0 {
            if let Some(h) = &self.hook {
                h();
            }
        }
        if let Err(e) = result {
            self.fail(e);
            return;
        }
        if served > 0 {
            match self.queues[q].needs_interrupt(m) {
                Ok(true) => self.signal_queue(q),
                Ok(false) => {}
                Err(e) => self.fail(e),
            }
        }
    }

    fn complete(
        &mut self,
        epoch: u64,
        queue: u16,
        head: u16,
        written: u32,
    ) -> Result<bool, CompleteError> {
        if epoch != self.epoch {
            return Ok(false);
        }
        let q = usize::from(queue);
        let flight = self
            .in_flight
            .get_mut(q)
            .ok_or(CompleteError::NoSuchQueue { queue })?;
        let room = flight
            .remove(&head)
            .ok_or(CompleteError::NotInFlight { queue, head })?;
        if self.status & STATUS_NEEDS_RESET != 0 || !self.queues[q].ready {
            return Ok(false);
        }
        let mem = self.mem.clone();
        let m = mem.memory();
        if let Err(e) = self.queues[q].add_used(m, head, written.min(room)) {
            self.fail(e);
            return Ok(false);
        }
        self.stats.chains += 1;
        match self.queues[q].needs_interrupt(m) {
            Ok(true) => self.signal_queue(q),
            Ok(false) => {}
            Err(e) => self.fail(e),
        }
        Ok(true)
    }

    fn notify(&mut self, q: usize) {
        self.stats.notifies += 1;
        self.process_queue(q);
    }

    // ---- common configuration ----

    fn common_image(&self) -> [u8; COMMON_LEN as usize] {
        let mut b = [0u8; COMMON_LEN as usize];
        let put = |b: &mut [u8], off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(&mut b, 0x00, &self.device_feature_select.to_le_bytes());
        let offered = self.offered();
        let dfeat = match self.device_feature_select {
            0 => offered as u32,
            1 => (offered >> 32) as u32,
            _ => 0,
        };
        put(&mut b, 0x04, &dfeat.to_le_bytes());
        put(&mut b, 0x08, &self.driver_feature_select.to_le_bytes());
        let drv = match self.driver_feature_select {
            0 => self.driver_features as u32,
            1 => (self.driver_features >> 32) as u32,
            _ => 0,
        };
        put(&mut b, 0x0c, &drv.to_le_bytes());
        put(&mut b, 0x10, &self.config_msix_vector.to_le_bytes());
        put(&mut b, 0x12, &(self.queues.len() as u16).to_le_bytes());
        b[0x14] = self.status;
        b[0x15] = self.config_generation;
        put(&mut b, 0x16, &self.queue_select.to_le_bytes());
        if let Some(q) = self.queues.get(usize::from(self.queue_select)) {
            put(&mut b, 0x18, &q.size.to_le_bytes());
            put(&mut b, 0x1a, &q.msix_vector.to_le_bytes());
            put(&mut b, 0x1c, &u16::from(q.ready).to_le_bytes());
            put(&mut b, 0x1e, &self.queue_select.to_le_bytes());
            put(&mut b, 0x20, &q.desc.to_le_bytes());
            put(&mut b, 0x28, &q.avail.to_le_bytes());
            put(&mut b, 0x30, &q.used.to_le_bytes());
        }
        b
    }

    fn common_read(&self, off: u64, size: u8) -> u64 {
        let img = self.common_image();
        let mut v = [0u8; 8];
        for (k, x) in v.iter_mut().enumerate().take(usize::from(size.min(8))) {
            if let Some(&y) = img.get(off as usize + k) {
                *x = y;
            }
        }
        u64::from_le_bytes(v)
    }

    fn common_write(&mut self, off: u64, size: u8, value: u64) {
        let mut img = self.common_image();
        let bytes = value.to_le_bytes();
        let (start, end) = (off as usize, off as usize + usize::from(size.min(8)));
        let stop = end.min(img.len()).max(start);
        if start < img.len() {
            img[start..stop].copy_from_slice(&bytes[..stop - start]);
        }
        let u16_at = |o: usize| u16::from_le_bytes([img[o], img[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([img[o], img[o + 1], img[o + 2], img[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        let touched = |o: usize, len: usize| start < o + len && o < end;
        if touched(0x00, 4) {
            self.device_feature_select = u32_at(0x00);
        }
        if touched(0x08, 4) {
            self.driver_feature_select = u32_at(0x08);
        }
        if touched(0x0c, 4) && self.status & STATUS_FEATURES_OK == 0 {
            let v = u64::from(u32_at(0x0c));
            match self.driver_feature_select {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v,
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32),
                _ => {}
            }
        }
        if touched(0x10, 2) {
            let v = u16_at(0x10);
            self.config_msix_vector = if usize::from(v) < self.vectors() {
                v
            } else {
                NO_VECTOR
            };
        }
        if touched(0x16, 2) {
            self.queue_select = u16_at(0x16);
        }
        let qi = usize::from(self.queue_select);
        let vectors = self.vectors();
        if let Some(q) = self.queues.get_mut(qi) {
            if touched(0x1a, 2) {
                let v = u16_at(0x1a);
                q.msix_vector = if usize::from(v) < vectors {
                    v
                } else {
                    NO_VECTOR
                };
            }
            if !q.ready {
                if touched(0x18, 2) {
                    q.size = u16_at(0x18);
                }
                if touched(0x20, 8) {
                    q.desc = u64_at(0x20);
                }
                if touched(0x28, 8) {
                    q.avail = u64_at(0x28);
                }
                if touched(0x30, 8) {
                    q.used = u64_at(0x30);
                }
            }
        }
        if touched(0x1c, 2) && u16_at(0x1c) == 1 {
            self.enable_queue(qi);
        }
        if touched(0x14, 1) {
            self.set_status(img[0x14]);
        }
    }

    fn enable_queue(&mut self, qi: usize) {
        let features = self.driver_features;
        let mem = self.mem.clone();
        let Some(q) = self.queues.get_mut(qi) else {
            return;
        };
        if q.ready {
            return;
        }
        q.indirect = features & F_INDIRECT_DESC != 0;
        q.event_idx = features & F_RING_EVENT_IDX != 0;
        match q.validate(mem.memory()) {
            Ok(()) => q.ready = true,
            Err(e) => self.fail(e),
        }
    }

    fn set_status(&mut self, v: u8) {
        if v == 0 {
            self.reset_device();
            return;
        }
        let old = self.status;
        // DEVICE_NEEDS_RESET is the device's; the driver's bits only accumulate.
        let mut new = (v & !STATUS_NEEDS_RESET) | (old & STATUS_NEEDS_RESET);
        if new & STATUS_FEATURES_OK != 0 && old & STATUS_FEATURES_OK == 0 {
            let offered = self.offered();
            if self.driver_features & !offered != 0 || self.driver_features & F_VERSION_1 == 0 {
                new &= !STATUS_FEATURES_OK;
            } else {
                self.dev.ack_features(self.driver_features);
            }
        }
        self.status = new;
        if new & STATUS_DRIVER_OK != 0 && old & STATUS_DRIVER_OK == 0 {
            for q in 0..self.queues.len() {
                self.process_queue(q);
            }
        }
        self.sync_notify();
    }

    // ---- the BAR ----

    fn bar_read(&mut self, off: u64, size: u8) -> u64 {
        let size = size.min(8);
        match off {
            0..COMMON_LEN => self.common_read(off, size),
            ISR_OFFSET => {
                let v = self.isr;
                self.isr = 0;
                self.update_intx();
                u64::from(v)
            }
            DEVICE_CFG_OFFSET..NOTIFY_OFFSET => {
                let mut b = [0u8; 8];
                self.dev
                    .read_config(off - DEVICE_CFG_OFFSET, &mut b[..usize::from(size)]);
                u64::from_le_bytes(b)
            }
            MSIX_TABLE_OFFSET..MSIX_PBA_OFFSET => {
                let rel = (off - MSIX_TABLE_OFFSET) as usize;
                let mut v = [0u8; 8];
                for (k, x) in v.iter_mut().enumerate().take(usize::from(size)) {
                    let at = rel + k;
                    if let Some(e) = self.msix_table.get(at / 16) {
                        *x = (e[(at % 16) / 4] >> (8 * (at % 4))) as u8;
                    }
                }
                u64::from_le_bytes(v)
            }
            MSIX_PBA_OFFSET.. => {
                let rel = (off - MSIX_PBA_OFFSET) as usize;
                let mut v = 0u64;
                for bit in 0..usize::from(size) * 8 {
                    if self
                        .msix_pending
                        .get(rel * 8 + bit)
                        .copied()
                        .unwrap_or(false)
                    {
                        v |= 1 << bit;
                    }
                }
                v
            }
            _ => 0,
        }
    }

    fn bar_write(&mut self, off: u64, size: u8, value: u64) {
        let size = size.min(8);
        match off {
            0..COMMON_LEN => self.common_write(off, size, value),
            DEVICE_CFG_OFFSET..NOTIFY_OFFSET => {
                let b = value.to_le_bytes();
                self.dev
                    .write_config(off - DEVICE_CFG_OFFSET, &b[..usize::from(size)]);
            }
            NOTIFY_OFFSET..MSIX_TABLE_OFFSET => {
                let q = (off - NOTIFY_OFFSET) / u64::from(NOTIFY_OFF_MULTIPLIER);
                self.notify(q as usize);
            }
            MSIX_TABLE_OFFSET..MSIX_PBA_OFFSET => {
                let rel = (off - MSIX_TABLE_OFFSET) as usize;
                let b = value.to_le_bytes();
                for (k, &x) in b.iter().enumerate().take(usize::from(size)) {
                    let at = rel + k;
                    if let Some(e) = self.msix_table.get_mut(at / 16) {
                        let w = &mut e[(at % 16) / 4];
                        let sh = 8 * (at % 4);
                        *w = (*w & !(0xff << sh)) | (u32::from(x) << sh);
                    }
                }
                self.deliver_pending();
            }
            _ => {}
        }
    }

    // ---- configuration space ----

    fn caps(&self) -> [u8; CAPS_END - CAPS_START] {
        let mut c = [0u8; CAPS_END - CAPS_START];
        let nq = self.queues.len() as u32;
        let vendor = |c: &mut [u8], at: usize, next: usize, len: u8, ty: u8, off: u64, n: u32| {
            let o = at - CAPS_START;
            c[o] = 0x09;
            c[o + 1] = next as u8;
            c[o + 2] = len;
            c[o + 3] = ty;
            c[o + 4] = VIRTIO_BAR;
            c[o + 8..o + 12].copy_from_slice(&(off as u32).to_le_bytes());
            c[o + 12..o + 16].copy_from_slice(&n.to_le_bytes());
        };
        vendor(&mut c, 0x40, 0x50, 16, CAP_COMMON, 0, COMMON_LEN as u32);
        vendor(
            &mut c,
            0x50,
            0x64,
            20,
            CAP_NOTIFY,
            NOTIFY_OFFSET,
            4 * nq.max(1),
        );
        c[0x50 - CAPS_START + 16..0x50 - CAPS_START + 20]
            .copy_from_slice(&NOTIFY_OFF_MULTIPLIER.to_le_bytes());
        vendor(&mut c, 0x64, 0x74, 16, CAP_ISR, ISR_OFFSET, 1);
        vendor(
            &mut c,
            0x74,
            0x84,
            16,
            CAP_DEVICE,
            DEVICE_CFG_OFFSET,
            0x1000,
        );
        vendor(&mut c, CAP_PCI_AT, CAP_MSIX_AT, 20, CAP_PCI_CFG, 0, 0);
        let o = CAP_PCI_AT - CAPS_START;
        c[o + 4] = self.cfg_bar;
        c[o + 8..o + 12].copy_from_slice(&self.cfg_offset.to_le_bytes());
        c[o + 12..o + 16].copy_from_slice(&self.cfg_length.to_le_bytes());
        c[o + 16..o + 20].copy_from_slice(&self.cfg_data.to_le_bytes());
        let o = CAP_MSIX_AT - CAPS_START;
        c[o] = 0x11;
        c[o + 1] = 0;
        let ctl = self.msix_control | (self.vectors() as u16 - 1);
        c[o + 2..o + 4].copy_from_slice(&ctl.to_le_bytes());
        let table = MSIX_TABLE_OFFSET as u32 | u32::from(VIRTIO_BAR);
        let pba = MSIX_PBA_OFFSET as u32 | u32::from(VIRTIO_BAR);
        c[o + 4..o + 8].copy_from_slice(&table.to_le_bytes());
        c[o + 8..o + 12].copy_from_slice(&pba.to_le_bytes());
        c
    }

    /// The BAR access of the PCI configuration access capability, `None` if the window the
    /// driver set is not a valid one.
    fn cfg_window(&self) -> Option<(u64, u8)> {
        let len = self.cfg_length;
        if self.cfg_bar != VIRTIO_BAR || !matches!(len, 1 | 2 | 4) {
            return None;
        }
        let off = u64::from(self.cfg_offset);
        if off % u64::from(len) != 0 || off + u64::from(len) > u64::from(BAR_SIZE) {
            return None;
        }
        Some((off, len as u8))
    }

    fn cfg_read(&mut self, reg: u32, size: u8) -> u32 {
        let (start, end) = (reg as usize, reg as usize + usize::from(size.min(4)));
        if start < PCI_CFG_DATA + 4 && PCI_CFG_DATA < end {
            if let Some((off, len)) = self.cfg_window() {
                self.cfg_data = self.bar_read(off, len) as u32;
            }
        }
        let caps = self.caps();
        let mut v = 0u32;
        for (k, r) in (start..end).enumerate() {
            let b = match r {
                0x06 => {
                    let intx = self.isr != 0 && !self.msix_enabled();
                    self.pci.cfg_read(6, 1) as u8 | 0x10 | if intx { 0x08 } else { 0 }
                }
                0x34 => CAPS_START as u8,
                CAPS_START..CAPS_END => caps[r - CAPS_START],
                _ => self.pci.cfg_read(r as u32, 1) as u8,
            };
            v |= u32::from(b) << (8 * k);
        }
        v
    }

    fn cfg_write(&mut self, reg: u32, size: u8, value: u32) {
        let (start, end) = (reg as usize, reg as usize + usize::from(size.min(4)));
        let mut data_written = false;
        let was_msix = self.msix_control;
        for (k, r) in (start..end).enumerate() {
            let b = (value >> (8 * k)) as u8;
            match r {
                0x34 | CAPS_START..CAPS_END => {
                    let p = CAP_PCI_AT;
                    let set = |w: &mut u32, i: usize| {
                        *w = (*w & !(0xff << (8 * i))) | (u32::from(b) << (8 * i));
                    };
                    if r == p + 4 {
                        self.cfg_bar = b;
                    } else if (p + 8..p + 12).contains(&r) {
                        set(&mut self.cfg_offset, r - p - 8);
                    } else if (p + 12..p + 16).contains(&r) {
                        set(&mut self.cfg_length, r - p - 12);
                    } else if (PCI_CFG_DATA..PCI_CFG_DATA + 4).contains(&r) {
                        set(&mut self.cfg_data, r - PCI_CFG_DATA);
                        data_written = true;
                    } else if r == CAP_MSIX_AT + 3 {
                        let hi = u16::from(b & 0xc0) << 8;
                        self.msix_control = (self.msix_control & !0xc000) | hi;
                    }
                }
                _ => self.pci.cfg_write(r as u32, 1, u32::from(b)),
            }
        }
        if data_written {
            if let Some((off, len)) = self.cfg_window() {
                let v = u64::from(self.cfg_data);
                self.bar_write(off, len, v);
            }
        }
        if was_msix != self.msix_control {
            self.deliver_pending();
        }
        // The command register's INTx disable or the interrupt line may have changed.
        self.update_intx();
        // So may BAR 4's address or decoding.
        self.sync_notify();
    }
}

impl PciDevice for VirtioPci {
    fn name(&self) -> &str {
        &self.name
    }
    fn cfg_read(&mut self, reg: u32, size: u8) -> u32 {
        lock(&self.inner).cfg_read(reg, size)
    }
    fn cfg_write(&mut self, reg: u32, size: u8, value: u32) {
        lock(&self.inner).cfg_write(reg, size, value)
    }
    fn reset(&mut self) {
        lock(&self.inner).reset_all()
    }
    fn bar_windows(&self) -> Vec<BarWindow> {
        lock(&self.inner).pci.bar_windows()
    }
}

impl IoDevice for VirtioBar {
    fn name(&self) -> &str {
        &self.name
    }
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        lock(&self.inner).bar_read(offset, size)
    }
    fn write(&mut self, offset: u64, size: u8, value: u64) {
        lock(&self.inner).bar_write(offset, size, value)
    }
    // The platform reset goes through the configuration space's reset (same state).
}
