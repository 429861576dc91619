//! The HSM kernel driver: one [`EmulatedHsm`] per open file (`acrn_dev_open`), the per-file
//! `acrn_vm`, ioreq clients, the dispatcher (`acrn_ioreq_dispatch`), cf8/cfc handling and the
//! in-kernel ioeventfd client. Sources: `drivers/virt/acrn/{hsm,vm,ioreq,mm,ioeventfd,irqfd}.c`
//! (acrn-semantics.md §1, §3, §4.3).
//!
//! The upcall (the HSM vector handler queuing work on the ordered `ioreq_wq`) is emulated without
//! an extra thread: the vCPU that raised it runs the dispatcher inline. At most one dispatcher
//! runs at a time (the workqueue is ordered); an upcall arriving while one runs sets a flag that
//! makes the running one scan again (a work item queued while executing runs once more). The
//! in-kernel ioeventfd client's handler also runs inline, right after its request is dispatched,
//! instead of on its own kthread.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use crate::abi::{self, le};
use crate::backend::{ArgKind, HsmBackend, IoctlArg, classify};
use crate::errno::Errno;
use crate::hv::{HV_ENOTTY, HV_OK, Hv, HvVm};
use crate::irqfd::IrqfdSet;
use crate::memory::{self, PAGE_SIZE, Pinned};
use crate::slot::{PageSlots, Slot};
use crate::slot_protocol;
use crate::types::{InterruptEvent, lock};
use std::sync::atomic::Ordering;

/// `ACRN_VM_FLAG_DESTROYED` (bit 0 of `acrn_vm.flags`).
const FLAG_DESTROYED: u32 = 1 << 0;
/// `ACRN_VM_FLAG_CLEARING_IOREQ` (bit 1).
const FLAG_CLEARING: u32 = 1 << 1;
/// `CONF1_ENABLE` of `pci_conf_addr`.
const CONF1_ENABLE: u32 = 0x8000_0000;

/// An ioreq client (`struct acrn_ioreq_client`).
// On lines of its own (128 bytes: a cache-line pair): touched on every request by the serving
// thread or a vCPU, it must share no line with another allocation (docs/performance.md, "False
// sharing").
#[repr(align(128))]
pub(crate) struct Client {
    is_default: bool,
    /// `ioreqs_map`: one bit per vCPU.
    ioreqs_map: AtomicU32,
    /// `ACRN_IOREQ_CLIENT_DESTROYING`.
    destroying: AtomicBool,
    /// Count of emulated signals delivered to ATTACH waiters.
    signals: Mutex<u64>,
    wq: Condvar,
    /// Threads blocked on `wq`; changed only under `signals`, so a waker holding that lock sees
    /// every waiter that could miss its wake-up. (A `Condvar` notify is a system call even with
    /// nobody waiting: one per request on the hot path without this count.)
    waiters: AtomicU32,
    /// `(type, start, end)` inclusive ranges (non-default clients only).
    ranges: Mutex<Vec<(u32, u64, u64)>>,
}

impl Client {
    fn new(is_default: bool) -> Arc<Client> {
        Arc::new(Client {
            is_default,
            ioreqs_map: AtomicU32::new(0),
            destroying: AtomicBool::new(false),
            signals: Mutex::new(0),
            wq: Condvar::new(),
            waiters: AtomicU32::new(0),
            ranges: Mutex::new(Vec::new()),
        })
    }

    fn wake(&self) {
        let guard = lock(&self.signals);
        let waiting = self.waiters.load(Ordering::Relaxed) != 0;
        drop(guard);
        if waiting {
            self.wq.notify_all();
        }
    }

    /// `acrn_in_range` for any of the client's ranges (C arithmetic: wrapping).
    fn claims(&self, ty: u32, addr: u64, size: u64) -> bool {
        lock(&self.ranges).iter().any(|&(t, start, end)| {
            t == ty && addr >= start && addr.wrapping_add(size).wrapping_sub(1) <= end
        })
    }
}

/// One registered ioeventfd (`struct hsm_ioeventfd`).
struct IoEventFd {
    fd: OwnedFd,
    /// Identity of the eventfd (device, inode): two fds of one eventfd match.
    key: (u64, u64),
    ty: u32,
    addr: u64,
    length: u64,
    data: u64,
    wildcard: bool,
}

/// What the clients lock (`ioreq_clients_lock`) and the VM's mutexes protect.
#[derive(Default)]
struct Inner {
    default_client: Option<Arc<Client>>,
    /// Non-default clients (`vm->ioreq_clients`): the ioeventfd client.
    clients: Vec<Arc<Client>>,
    ioeventfd_client: Option<Arc<Client>>,
    ioeventfds: Vec<IoEventFd>,
    /// RAM segments pinned by SET_MEMSEG.
    ram: Vec<Pinned>,
    /// `regions_mapping_count` (never reset, as in the kernel).
    regions_mapping_count: usize,
    monitor_page: Option<Pinned>,
}

/// The per-file `struct acrn_vm`.
// On lines of its own (128 bytes: a cache-line pair): touched on every request by the serving
// thread or a vCPU, it must share no line with another allocation (docs/performance.md, "False
// sharing").
#[repr(align(128))]
pub(crate) struct HsmVm {
    vmid: AtomicU16,
    vcpu_num: AtomicU16,
    flags: AtomicU32,
    pci_conf_addr: AtomicU32,
    /// `vm->ioreq_buf` (the pinned page).
    ioreq: RwLock<Option<Pinned>>,
    inner: Mutex<Inner>,
    /// Serialises IOEVENTFD (and the ioeventfd teardown) with their KVM mirrors: taken before
    /// `inner`, and held while the mirror is updated after `inner` is released (a vCPU thread
    /// may need `inner` to dispatch while the KVM engine, under its `running` lock, joins it).
    ioeventfd_cfg: Mutex<()>,
    /// The HV VM this file created last (a cache for the hot path; hypercalls resolve by vmid).
    hv_vm: RwLock<Option<Arc<HvVm>>>,
    irqfds: IrqfdSet,
    id: u64,
}

impl HsmVm {
    fn ioreq_page(&self) -> Option<Pinned> {
        self.ioreq.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn vmid(&self) -> u16 {
        self.vmid.load(Ordering::Acquire)
    }
    fn hv_vm(&self) -> Option<Arc<HvVm>> {
        self.hv_vm.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The emulated hypervisor + HSM. Clones share the machine; when the last clone *and* every
/// [`EmulatedHsm`] and [`Guest`](crate::Guest) of it are gone, the machine is gone.
// Defined here, beside HSM's global state it holds, so that the files (`EmulatedHsm`) and the
// guest runners (`Guest`, above) can keep their machine; its methods are in the crate root.
#[derive(Clone)]
pub struct Emulator {
    /// The hypervisor.
    pub(crate) hv: Arc<Hv>,
    /// HSM's global state (the VM list, the dispatcher), shared by every file of the machine.
    pub(crate) hsm: Arc<HsmGlobal>,
    /// Dropped with the last user-facing clone: stops every vCPU wait.
    pub(crate) _shutdown: Arc<ShutdownOnDrop>,
}

/// Shuts the hypervisor down when dropped (see [`Emulator`]).
pub(crate) struct ShutdownOnDrop(pub(crate) Arc<Hv>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// HSM's global state: `acrn_vm_list` and the dispatcher.
// On lines of its own (128 bytes: a cache-line pair): touched on every request by the serving
// thread or a vCPU, it must share no line with another allocation (docs/performance.md, "False
// sharing").
#[repr(align(128))]
pub(crate) struct HsmGlobal {
    vm_list: RwLock<Vec<Arc<HsmVm>>>,
    dispatch_lock: Mutex<()>,
    pending: AtomicBool,
    next_id: AtomicU64,
}

impl HsmGlobal {
    pub(crate) fn new() -> HsmGlobal {
        HsmGlobal {
            vm_list: RwLock::new(Vec::new()),
            dispatch_lock: Mutex::new(()),
            pending: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        }
    }
}

/// The upcall: the HSM vector fired. Runs the dispatcher inline unless one is already running,
/// in which case that one scans again.
pub(crate) fn upcall(hv: &Hv, g: &HsmGlobal) {
    g.pending.store(true, Ordering::Release);
    loop {
        let guard = match g.dispatch_lock.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        while g.pending.swap(false, Ordering::AcqRel) {
            dispatch_all(hv, g);
        }
        drop(guard);
        if !g.pending.load(Ordering::Acquire) {
            return;
        }
    }
}

/// `ioreq_dispatcher`: every VM on the list, stopping at the first without an ioreq page.
fn dispatch_all(hv: &Hv, g: &HsmGlobal) {
    let list = g.vm_list.read().unwrap_or_else(|e| e.into_inner());
    for vm in list.iter() {
        let Some(page) = vm.ioreq_page() else { break };
        dispatch_vm(hv, vm, &page);
    }
}

/// `acrn_ioreq_dispatch`.
fn dispatch_vm(hv: &Hv, vm: &HsmVm, page: &Pinned) {
    let n = usize::from(vm.vcpu_num.load(Ordering::Acquire)).min(abi::IO_REQUEST_MAX);
    let mem = PageSlots(page);
    for i in 0..n {
        let slot = Slot::new(page, i);
        if !slot_protocol::hsm_pending(&mem, i) {
            continue;
        }
        if vm.flags.load(Ordering::Acquire) & FLAG_CLEARING != 0 {
            complete_slot(hv, vm, i, slot);
            continue;
        }
        if handle_cf8cfc(hv, vm, i, slot) {
            continue;
        }
        let inner = lock(&vm.inner);
        let ty = slot.ty();
        let addr = slot.address();
        let size = slot.size();
        let client = inner
            .clients
            .iter()
            .find(|c| (ty == abi::TYPE_MMIO || ty == abi::TYPE_PORTIO) && c.claims(ty, addr, size))
            .or(inner.default_client.as_ref())
            .cloned();
        let Some(client) = client else {
            // "Failed to find ioreq client": the request stays PENDING and the rest of this VM's
            // slots are not scanned.
            return;
        };
        slot_protocol::hsm_publish(&mem, i, !client.is_default);
        client.ioreqs_map.fetch_or(1 << i, Ordering::AcqRel);
        if client.is_default {
            client.wake();
        } else {
            // The ioeventfd client's kthread, inline: handle, then complete.
            ioeventfd_handle(&inner, slot);
            client.ioreqs_map.fetch_and(!(1 << i), Ordering::AcqRel);
            complete_slot(hv, vm, i, slot);
        }
    }
}

/// `handle_cf8cfc`: returns true when the request was completed in the kernel.
fn handle_cf8cfc(hv: &Hv, vm: &HsmVm, i: usize, slot: Slot<'_>) -> bool {
    if slot.ty() != abi::TYPE_PORTIO {
        return false;
    }
    let port = slot.address();
    let handled = if port == 0xcf8 {
        if slot.direction() == abi::DIR_WRITE {
            vm.pci_conf_addr.store(slot.value32(), Ordering::Relaxed);
        } else {
            slot.set_value32(vm.pci_conf_addr.load(Ordering::Relaxed));
        }
        true
    } else if (0xcfc..0xcfc + 4).contains(&port) {
        let a = vm.pci_conf_addr.load(Ordering::Relaxed);
        if a & CONF1_ENABLE == 0 {
            if slot.direction() == abi::DIR_READ {
                slot.set_value32(0xffff_ffff);
            }
            true
        } else {
            let offset = (port - 0xcfc) as u32;
            use abi::slot as o;
            slot.set_ty(abi::TYPE_PCICFG);
            slot.set_u32_at(o::PCI_BUS, (a >> 16) & 0xff);
            slot.set_u32_at(o::PCI_DEV, (a >> 11) & 0x1f);
            slot.set_u32_at(o::PCI_FUNC, (a >> 8) & 0x7);
            slot.set_u32_at(o::PCI_REG, (a & 0xfc) + ((a >> 16) & 0xf00) + offset);
            false
        }
    } else {
        false
    };
    if handled {
        complete_slot(hv, vm, i, slot);
    }
    handled
}

/// `ioreq_complete_request`: read `completion_polling`, release-store COMPLETE, notify the HV
/// unless polling.
fn complete_slot(hv: &Hv, vm: &HsmVm, vcpu: usize, slot: Slot<'_>) -> i64 {
    let polling = slot_protocol::hsm_complete(&PageSlots(slot.page()), vcpu);
    let hv_vm = vm.hv_vm().filter(|v| v.vmid == vm.vmid());
    let Some(hv_vm) = hv_vm else {
        return if polling {
            HV_OK
        } else {
            hv_vm_lookup_notify(hv, vm.vmid(), vcpu)
        };
    };
    if let Some(v) = hv_vm.vcpus.get(vcpu) {
        v.doorbell();
    }
    if polling {
        return HV_OK;
    }
    hv.notify_request_finish(&hv_vm, vcpu as u16)
}

fn hv_vm_lookup_notify(hv: &Hv, vmid: u16, vcpu: usize) -> i64 {
    match hv.vm(vmid) {
        Some(v) => hv.notify_request_finish(&v, vcpu as u16),
        None => HV_ENOTTY,
    }
}

/// `acrn_ioeventfd_handler`: reads return 0; a write signals the matching eventfd.
fn ioeventfd_handle(inner: &Inner, slot: Slot<'_>) {
    let ty = slot.ty();
    let dir = slot.direction();
    if dir == abi::DIR_READ {
        if ty == abi::TYPE_MMIO {
            slot.set_value64(0);
        } else {
            slot.set_value32(0);
        }
        return;
    }
    let addr = slot.address();
    let size = slot.size();
    let val = if ty == abi::TYPE_MMIO {
        slot.value64()
    } else {
        u64::from(slot.value32())
    };
    if let Some(p) = inner
        .ioeventfds
        .iter()
        .find(|p| p.ty == ty && p.addr == addr && p.length >= size && (p.wildcard || p.data == val))
    {
        eventfd_signal(p.fd.as_raw_fd());
    }
}

fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live local to an fd this module owns (a dup of an eventfd).
    // The result is ignored, as `eventfd_signal` in the kernel cannot fail either.
    let _ = unsafe { libc::write(fd, (&raw const one).cast::<libc::c_void>(), 8) };
}

/// Checks that `fd` is an eventfd and returns a dup of it and its identity; errors as
/// `eventfd_ctx_fdget` (`EBADF` for a bad fd, `EINVAL` for another kind of file).
fn eventfd_get(fd: i32) -> Result<(OwnedFd, (u64, u64)), Errno> {
    if fd < 0 {
        return Err(Errno::EBADF);
    }
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|_| Errno::EBADF)?;
    if link.to_string_lossy() != "anon_inode:[eventfd]" {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `fcntl(F_DUPFD_CLOEXEC)` on an fd just checked to be open; the result is checked.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `dup` is a fresh descriptor owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(dup) };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fstat` fills `st` for a valid fd; checked before `assume_init`.
    let rc = unsafe { libc::fstat(owned.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(Errno::last());
    }
    // SAFETY: fstat succeeded, so `st` is initialised.
    let st = unsafe { st.assume_init() };
    Ok((owned, (st.st_dev, st.st_ino)))
}

/// One open `/dev/acrn_hsm` of the emulator (what `open()` returns): its own `acrn_vm` with
/// `vmid = 0xffff` until CREATE_VM. Dropping it is `release()`: the VM is destroyed as
/// `acrn_vm_destroy` would (which fails in the hypervisor unless the VM is paused).
pub struct EmulatedHsm {
    hv: Arc<Hv>,
    /// HSM's global state (the emulator's).
    hsm: Arc<HsmGlobal>,
    vm: Arc<HsmVm>,
    emulator: Emulator,
}

impl std::fmt::Debug for EmulatedHsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatedHsm")
            .field("vmid", &self.vm.vmid())
            .finish()
    }
}

impl EmulatedHsm {
    pub(crate) fn open(emulator: &Emulator) -> EmulatedHsm {
        let hv = emulator.hv.clone();
        let hsm = emulator.hsm.clone();
        let id = hsm.next_id.fetch_add(1, Ordering::Relaxed);
        let vm = Arc::new(HsmVm {
            vmid: AtomicU16::new(abi::INVALID_VMID),
            vcpu_num: AtomicU16::new(0),
            flags: AtomicU32::new(0),
            pci_conf_addr: AtomicU32::new(0),
            ioreq: RwLock::new(None),
            inner: Mutex::new(Inner::default()),
            ioeventfd_cfg: Mutex::new(()),
            hv_vm: RwLock::new(None),
            irqfds: IrqfdSet::new(hv.clone()),
            id,
        });
        EmulatedHsm {
            hv,
            hsm,
            vm,
            emulator: emulator.clone(),
        }
    }

    /// The emulator this file belongs to.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// The vmid of this file's VM (`0xffff` when none).
    pub fn vmid(&self) -> u16 {
        self.vm.vmid()
    }

    /// Emulates a signal delivered to the threads blocked in `ATTACH_IOREQ_CLIENT` on this file:
    /// they return `0` (the kernel discards `-ERESTARTSYS`), as a device model sees on `SIGINT`.
    pub fn signal_attach_waiters(&self) {
        let c = lock(&self.vm.inner).default_client.clone();
        if let Some(c) = c {
            *lock(&c.signals) += 1;
            c.wq.notify_all();
        }
    }

    /// The default client's pending bitmap (`ioreqs_map`), `None` without a client. For tests.
    pub fn default_client_bitmap(&self) -> Option<u16> {
        lock(&self.vm.inner)
            .default_client
            .as_ref()
            .map(|c| c.ioreqs_map.load(Ordering::Acquire) as u16)
    }

    /// `vm->pci_conf_addr` (the last value written to 0xCF8). For tests.
    pub fn pci_conf_addr(&self) -> u32 {
        self.vm.pci_conf_addr.load(Ordering::Relaxed)
    }

    /// Number of RAM segments recorded (`regions_mapping_count`). For tests.
    pub fn memseg_count(&self) -> usize {
        lock(&self.vm.inner).regions_mapping_count
    }

    /// Whether the VM is on HSM's dispatch list (`acrn_vm_list`). For tests.
    pub fn on_vm_list(&self) -> bool {
        self.hsm
            .vm_list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|v| v.id == self.vm.id)
    }

    /// Whether HSM still holds the ioreq page (`vm->ioreq_buf != NULL`). For tests.
    pub fn has_ioreq_page(&self) -> bool {
        self.vm.ioreq_page().is_some()
    }

    /// `copy_from_user` of an ioctl's argument struct of `N` bytes, into a stack buffer (every
    /// argument struct is at most a few hundred bytes; NOTIFY's 8 run on every request).
    fn copy_in<const N: usize>(kind: &mut ArgKind<'_, '_>) -> Result<[u8; N], Errno> {
        let mut buf = [0u8; N];
        match kind {
            ArgKind::Bytes(b) => buf.copy_from_slice(b),
            ArgKind::Address(a) => memory::copy_from_user(*a, &mut buf)?,
            _ => return Err(Errno::EFAULT),
        }
        Ok(buf)
    }

    fn copy_out(kind: &mut ArgKind<'_, '_>, data: &[u8]) -> Result<(), Errno> {
        match kind {
            ArgKind::Bytes(b) => {
                b.copy_from_slice(data);
                Ok(())
            }
            ArgKind::Address(a) => memory::copy_to_user(*a, data),
            _ => Err(Errno::EFAULT),
        }
    }

    /// The ioctl switch of `acrn_dev_ioctl`.
    fn dispatch_ioctl(&self, request: u32, mut arg: IoctlArg<'_>) -> Result<i64, Errno> {
        let vm = &self.vm;
        if vm.vmid() == abi::INVALID_VMID && request != abi::CREATE_VM {
            return Err(Errno::EINVAL);
        }
        let known = matches!(
            request,
            abi::CREATE_VM
                | abi::DESTROY_VM
                | abi::START_VM
                | abi::PAUSE_VM
                | abi::RESET_VM
                | abi::SET_VCPU_REGS
                | abi::INJECT_MSI
                | abi::VM_INTR_MONITOR
                | abi::SET_IRQLINE
                | abi::NOTIFY_REQUEST_FINISH
                | abi::CREATE_IOREQ_CLIENT
                | abi::ATTACH_IOREQ_CLIENT
                | abi::DESTROY_IOREQ_CLIENT
                | abi::CLEAR_VM_IOREQ
                | abi::SET_MEMSEG
                | abi::UNSET_MEMSEG
                | abi::IOEVENTFD
                | abi::IRQFD
                | abi::SET_PTDEV_INTR
                | abi::RESET_PTDEV_INTR
                | abi::ASSIGN_PCIDEV
                | abi::DEASSIGN_PCIDEV
                | abi::ASSIGN_MMIODEV
                | abi::DEASSIGN_MMIODEV
                | abi::CREATE_VDEV
                | abi::DESTROY_VDEV
                | abi::PM_GET_CPU_STATE
        );
        if !known {
            return Err(Errno::ENOTTY);
        }
        let mut kind = classify(request, &mut arg)?;
        let hv_ret = |r: i64| {
            if r < 0 {
                Err(Errno::from_negative(r))
            } else {
                Ok(r)
            }
        };
        match request {
            abi::CREATE_VM => self.create_vm(&mut kind),
            abi::DESTROY_VM => hv_ret(self.destroy_vm()),
            abi::START_VM => hv_ret(self.hv.start_vm(vm.vmid())),
            abi::PAUSE_VM => hv_ret(self.hv.pause_vm(vm.vmid())),
            abi::RESET_VM => hv_ret(self.hv.reset_vm(vm.vmid())),
            abi::SET_VCPU_REGS => {
                use abi::vcpu_regs as o;
                let b = Self::copy_in::<{ o::SIZE }>(&mut kind)?;
                let nonzero = |from: usize, len: usize| b[from..from + len].iter().any(|&x| x != 0);
                if nonzero(o::RESERVED_64, 32)
                    || nonzero(o::RESERVED, 6)
                    || nonzero(o::RESERVED_32, 12)
                    || nonzero(o::GDT_RESERVED, 6)
                    || nonzero(o::IDT_RESERVED, 6)
                {
                    return Err(Errno::EINVAL);
                }
                hv_ret(self.hv.set_vcpu_regs(vm.vmid(), &b))
            }
            abi::NOTIFY_REQUEST_FINISH => {
                use abi::notify as o;
                let b = Self::copy_in::<{ o::SIZE }>(&mut kind)?;
                if le::u16_at(&b, o::RESERVED) != 0 {
                    return Err(Errno::EINVAL);
                }
                // notify.vcpu (u32) is passed on as a u16.
                let vcpu = le::u32_at(&b, o::VCPU) as u16;
                self.default_complete(vcpu)
            }
            abi::CREATE_IOREQ_CLIENT => {
                let mut inner = lock(&vm.inner);
                if inner.default_client.is_some() {
                    return Err(Errno::EEXIST);
                }
                inner.default_client = Some(Client::new(true));
                Ok(0)
            }
            abi::ATTACH_IOREQ_CLIENT => self.attach(),
            abi::DESTROY_IOREQ_CLIENT => {
                let c = lock(&vm.inner).default_client.clone();
                if let Some(c) = c {
                    self.client_destroy(&c);
                }
                Ok(0)
            }
            abi::CLEAR_VM_IOREQ => {
                self.clear_vm_ioreq();
                Ok(0)
            }
            abi::SET_MEMSEG => {
                let b = Self::copy_in::<{ abi::memmap::SIZE }>(&mut kind)?;
                self.set_memseg(&b)
            }
            abi::UNSET_MEMSEG => {
                use abi::memmap as o;
                let b = Self::copy_in::<{ o::SIZE }>(&mut kind)?;
                if le::u32_at(&b, o::TYPE) != abi::MEMMAP_MMIO {
                    return Err(Errno::EINVAL);
                }
                let op = (
                    2,
                    le::u64_at(&b, o::USER_VM_PA),
                    0,
                    le::u64_at(&b, o::LEN),
                    0,
                );
                hv_ret(self.hv.set_memory_regions(vm.vmid(), &[op]))
            }
            abi::INJECT_MSI => {
                // hcall_inject_msi: the hypervisor checks the address (vlapic.c).
                let b = Self::copy_in::<{ abi::msi::SIZE }>(&mut kind)?;
                let addr = le::u64_at(&b, abi::msi::ADDR);
                let ev = InterruptEvent::Msi {
                    vmid: vm.vmid(),
                    addr,
                    data: le::u64_at(&b, abi::msi::DATA),
                };
                hv_ret(self.hv.inject_msi(vm.vmid(), addr, ev))
            }
            abi::SET_IRQLINE => {
                let ArgKind::Value(v) = kind else {
                    return Err(Errno::EFAULT);
                };
                hv_ret(self.hv.set_irqline(vm.vmid(), v as u32, (v >> 32) as u32))
            }
            abi::VM_INTR_MONITOR => {
                let ArgKind::Value(addr) = kind else {
                    return Err(Errno::EFAULT);
                };
                // pin_user_pages_fast(ioctl_param, 1): the page holding the address; the
                // hypervisor reads the header at the page's start (page_to_phys).
                let page = memory::pin(addr & !(PAGE_SIZE as u64 - 1), PAGE_SIZE)
                    .map_err(|_| Errno::EFAULT)?;
                let r = self.hv.vm_intr_monitor(vm.vmid(), &page);
                if r < 0 {
                    // unpin_user_page; the previous monitor page stays.
                    return hv_ret(r);
                }
                lock(&vm.inner).monitor_page = Some(page);
                Ok(0)
            }
            abi::SET_PTDEV_INTR | abi::RESET_PTDEV_INTR => {
                let b = Self::copy_in::<{ abi::ptdev_irq::SIZE }>(&mut kind)?;
                hv_ret(if request == abi::SET_PTDEV_INTR {
                    self.hv.set_ptdev_intr(vm.vmid(), &b)
                } else {
                    self.hv.reset_ptdev_intr(vm.vmid(), &b)
                })
            }
            abi::ASSIGN_PCIDEV | abi::DEASSIGN_PCIDEV => {
                let b = Self::copy_in::<{ abi::pcidev::SIZE }>(&mut kind)?;
                hv_ret(if request == abi::ASSIGN_PCIDEV {
                    self.hv.assign_pcidev(vm.vmid(), &b)
                } else {
                    self.hv.deassign_pcidev(vm.vmid(), &b)
                })
            }
            abi::ASSIGN_MMIODEV | abi::DEASSIGN_MMIODEV => {
                let b = Self::copy_in::<{ abi::mmiodev::SIZE }>(&mut kind)?;
                hv_ret(if request == abi::ASSIGN_MMIODEV {
                    self.hv.assign_mmiodev(vm.vmid(), &b)
                } else {
                    self.hv.deassign_mmiodev(vm.vmid(), &b)
                })
            }
            abi::CREATE_VDEV | abi::DESTROY_VDEV => {
                let b = Self::copy_in::<{ abi::vdev::SIZE }>(&mut kind)?;
                hv_ret(if request == abi::CREATE_VDEV {
                    self.hv.add_vdev(vm.vmid(), &b)
                } else {
                    self.hv.remove_vdev(vm.vmid(), &b)
                })
            }
            abi::PM_GET_CPU_STATE => self.pm_get_cpu_state(&mut kind),
            abi::IOEVENTFD => {
                let b = Self::copy_in::<{ abi::ioeventfd::SIZE }>(&mut kind)?;
                self.ioeventfd(&b)
            }
            abi::IRQFD => {
                use abi::irqfd as o;
                let b = Self::copy_in::<{ o::SIZE }>(&mut kind)?;
                // acrn_irqfd_config: only the DEASSIGN bit is looked at.
                let flags = le::u32_at(&b, o::FLAGS);
                let (fd, key) = eventfd_get(le::u32_at(&b, o::FD) as i32)?;
                if flags & abi::IRQFD_FLAG_DEASSIGN != 0 {
                    vm.irqfds.deassign(key);
                    Ok(0)
                } else {
                    vm.irqfds.assign(
                        vm.vmid(),
                        fd,
                        key,
                        le::u64_at(&b, o::MSI_ADDR),
                        le::u64_at(&b, o::MSI_DATA),
                    )?;
                    Ok(0)
                }
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    /// CREATE_VM: `hsm.c (acrn_dev_ioctl)` + `vm.c (acrn_vm_create)` + `acrn_ioreq_init`.
    fn create_vm(&self, kind: &mut ArgKind<'_, '_>) -> Result<i64, Errno> {
        use abi::vm_creation as o;
        let vm = &self.vm;
        let mut cv = Self::copy_in::<{ o::SIZE }>(kind)?;
        if le::u16_at(&cv, o::RESERVED0) != 0 || le::u16_at(&cv, o::RESERVED1) != 0 {
            return Err(Errno::EINVAL);
        }
        let ret = self.hv.create_vm(&mut cv);
        let new_vmid = le::u16_at(&cv, o::VMID);
        if ret < 0 || new_vmid == abi::INVALID_VMID {
            return Err(Errno::EINVAL);
        }
        // The VM struct is (re)initialised in place: list head, vmid, vcpu_num.
        vm.vmid.store(new_vmid, Ordering::Release);
        vm.vcpu_num
            .store(le::u16_at(&cv, o::VCPU_NUM), Ordering::Release);
        lock(&vm.inner).clients.clear();
        *vm.hv_vm.write().unwrap_or_else(|e| e.into_inner()) = self.hv.vm(new_vmid);
        // acrn_ioreq_init
        let init = (|| {
            if vm.ioreq_page().is_some() {
                return Err(Errno::EEXIST);
            }
            let buf = le::u64_at(&cv, o::IOREQ_BUF);
            let page = memory::pin(buf & !(PAGE_SIZE as u64 - 1), PAGE_SIZE)?;
            if self.hv.set_ioreq_buffer(new_vmid, page.clone()) < 0 {
                return Err(Errno::EFAULT);
            }
            *vm.ioreq.write().unwrap_or_else(|e| e.into_inner()) = Some(page);
            Ok(())
        })();
        if init.is_err() {
            // ioreq_buf_fail: the destroy hypercall fails for a CREATED VM (orphaned).
            let _ = self.hv.destroy_vm(new_vmid);
            vm.vmid.store(abi::INVALID_VMID, Ordering::Release);
            return Err(Errno::EINVAL);
        }
        self.hsm
            .vm_list
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(vm.clone());
        // acrn_ioeventfd_init: the in-kernel client "ioeventfd-<vmid>".
        {
            let mut inner = lock(&vm.inner);
            let c = Client::new(false);
            inner.clients.push(c.clone());
            inner.ioeventfd_client = Some(c);
        }
        if Self::copy_out(kind, &cv).is_err() {
            self.destroy_vm();
            return Err(Errno::EFAULT);
        }
        Ok(0)
    }

    /// `acrn_vm_destroy` as since Linux 5.14 ("virt: acrn: Do hcall_destroy_vm() before
    /// resource release"): the hypervisor call first; when it refuses (the VM is not paused),
    /// the DESTROYED bit is cleared and its code returned with nothing torn down, so a retry is
    /// safe. On success: off the VM list, the ioeventfd client, the irqfds, every ioreq client
    /// (waking ATTACH with ENODEV), the ioreq page, the monitor page, the RAM mappings.
    fn destroy_vm(&self) -> i64 {
        let vm = &self.vm;
        if vm.vmid() == abi::INVALID_VMID
            || vm.flags.fetch_or(FLAG_DESTROYED, Ordering::AcqRel) & FLAG_DESTROYED != 0
        {
            return 0;
        }
        let ret = self.hv.destroy_vm(vm.vmid());
        if ret < 0 {
            vm.flags.fetch_and(!FLAG_DESTROYED, Ordering::AcqRel);
            return ret;
        }
        self.teardown();
        lock(&vm.inner).ram.clear();
        vm.vmid.store(abi::INVALID_VMID, Ordering::Release);
        0
    }

    /// The HSM side of a destroy: off `acrn_vm_list`, `acrn_ioeventfd_deinit`,
    /// `acrn_irqfd_deinit`, `acrn_ioreq_deinit` (non-default clients, then the default client,
    /// then the ioreq page), the monitor page.
    fn teardown(&self) {
        let vm = &self.vm;
        self.hsm
            .vm_list
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|v| v.id != vm.id);
        let evc = {
            let _cfg = lock(&vm.ioeventfd_cfg);
            let evc = {
                let mut inner = lock(&vm.inner);
                inner.ioeventfds.clear();
                inner.ioeventfd_client.take()
            };
            if let Some(v) = vm.hv_vm().filter(|v| v.vmid == vm.vmid()) {
                v.kvm.clear_ioeventfds();
            }
            evc
        };
        if let Some(c) = evc {
            self.client_destroy(&c);
        }
        vm.irqfds.clear();
        let clients: Vec<_> = lock(&vm.inner).clients.clone();
        for c in clients {
            self.client_destroy(&c);
        }
        let dc = lock(&vm.inner).default_client.clone();
        if let Some(c) = dc {
            self.client_destroy(&c);
        }
        *vm.ioreq.write().unwrap_or_else(|e| e.into_inner()) = None;
        lock(&vm.inner).monitor_page = None;
    }

    /// PM_GET_CPU_STATE: `pmcmd_ioctl`. An unknown type returns 0 with no hypercall and nothing
    /// written; otherwise `hcall_get_cpu_state(cmd, buffer)` (the target VM is in the command's
    /// bits 31:24) and, on success, the buffer is copied over the argument: 8 bytes for the
    /// counts (a u64 whose low byte the hypervisor wrote; the emulator zeroes the rest, which the
    /// kernel leaves as `kmalloc` gave it), `acrn_pstate_data` (48) or `acrn_cstate_data` (32)
    /// for the data commands. Those are larger than the 8-byte argument: an argument given as
    /// 8 bytes cannot hold them (`EFAULT`, where the kernel would write past it); pass an
    /// address with room for them.
    fn pm_get_cpu_state(&self, kind: &mut ArgKind<'_, '_>) -> Result<i64, Errno> {
        let b = Self::copy_in::<8>(kind)?;
        let cmd = u64::from_le_bytes(b);
        let out_len = match cmd & 0xff {
            0 | 2 => 8,
            1 => 48,
            3 => 32,
            _ => return Ok(0),
        };
        let mut out = [0u8; 48];
        let (r, _) = self.hv.get_cpu_pm_state(cmd, &mut out);
        if r < 0 {
            return Err(Errno::from_negative(r));
        }
        match kind {
            ArgKind::Bytes(_) if out_len > 8 => Err(Errno::EFAULT),
            _ => Self::copy_out_prefix(kind, &out[..out_len]).map(|()| r),
        }
    }

    fn copy_out_prefix(kind: &mut ArgKind<'_, '_>, data: &[u8]) -> Result<(), Errno> {
        match kind {
            ArgKind::Bytes(b) => {
                b[..data.len()].copy_from_slice(data);
                Ok(())
            }
            ArgKind::Address(a) => memory::copy_to_user(*a, data),
            _ => Err(Errno::EFAULT),
        }
    }

    /// `acrn_ioreq_client_destroy`.
    fn client_destroy(&self, client: &Arc<Client>) {
        {
            // ioreq_pause(): no dispatcher runs meanwhile.
            let _paused = lock(&self.hsm.dispatch_lock);
            client.destroying.store(true, Ordering::Release);
            client.wake();
            let mut inner = lock(&self.vm.inner);
            if client.is_default {
                if inner
                    .default_client
                    .as_ref()
                    .is_some_and(|c| Arc::ptr_eq(c, client))
                {
                    inner.default_client = None;
                }
            } else {
                inner.clients.retain(|c| !Arc::ptr_eq(c, client));
            }
            lock(&client.ranges).clear();
        }
        // ioreq_resume(): one dispatch pass.
        upcall(&self.hv, &self.hsm);
    }

    /// ATTACH_IOREQ_CLIENT: `acrn_ioreq_client_wait`.
    fn attach(&self) -> Result<i64, Errno> {
        let Some(c) = lock(&self.vm.inner).default_client.clone() else {
            return Err(Errno::ENODEV);
        };
        // A short spin before the sleep (timing only: the checks under the lock below decide).
        crate::hv::halt_poll(|| {
            c.ioreqs_map.load(Ordering::Acquire) != 0 || c.destroying.load(Ordering::Acquire)
        });
        let mut sig = lock(&c.signals);
        let start = *sig;
        loop {
            if c.destroying.load(Ordering::Acquire) {
                return Err(Errno::ENODEV);
            }
            if c.ioreqs_map.load(Ordering::Acquire) != 0 || *sig != start {
                return Ok(0);
            }
            if self.hv.shutdown.load(Ordering::Acquire) {
                return Ok(0);
            }
            c.waiters.fetch_add(1, Ordering::Relaxed);
            sig = c.wq.wait(sig).unwrap_or_else(|e| e.into_inner());
            c.waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// NOTIFY_REQUEST_FINISH: `acrn_ioreq_request_default_complete`.
    fn default_complete(&self, vcpu: u16) -> Result<i64, Errno> {
        let vm = &self.vm;
        let inner = lock(&vm.inner);
        let Some(c) = inner.default_client.as_ref() else {
            return Ok(0);
        };
        if vcpu >= vm.vcpu_num.load(Ordering::Acquire) || usize::from(vcpu) >= abi::IO_REQUEST_MAX {
            return Err(Errno::EINVAL);
        }
        c.ioreqs_map.fetch_and(!(1u32 << vcpu), Ordering::AcqRel);
        // With no ioreq page (after a failed DESTROY) the kernel would dereference NULL + vcpu;
        // the emulator answers EFAULT instead.
        let page = vm.ioreq_page().ok_or(Errno::EFAULT)?;
        let r = complete_slot(
            &self.hv,
            vm,
            usize::from(vcpu),
            Slot::new(&page, usize::from(vcpu)),
        );
        drop(inner);
        if r < 0 {
            Err(Errno::from_negative(r))
        } else {
            Ok(r)
        }
    }

    /// CLEAR_VM_IOREQ: `acrn_ioreq_request_clear`.
    fn clear_vm_ioreq(&self) {
        let vm = &self.vm;
        vm.flags.fetch_or(FLAG_CLEARING, Ordering::AcqRel);
        let mut retry = 10;
        loop {
            let pending = lock(&vm.inner)
                .clients
                .iter()
                .any(|c| c.ioreqs_map.load(Ordering::Acquire) != 0);
            if !pending {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            retry -= 1;
            if retry == 0 {
                break;
            }
        }
        {
            let inner = lock(&vm.inner);
            if let (Some(c), Some(page)) = (inner.default_client.as_ref(), vm.ioreq_page()) {
                let n = usize::from(vm.vcpu_num.load(Ordering::Acquire)).min(abi::IO_REQUEST_MAX);
                for i in 0..n {
                    if c.ioreqs_map.load(Ordering::Acquire) & (1 << i) != 0 {
                        c.ioreqs_map.fetch_and(!(1 << i), Ordering::AcqRel);
                        complete_slot(&self.hv, vm, i, Slot::new(&page, i));
                    }
                }
            }
        }
        vm.flags.fetch_and(!FLAG_CLEARING, Ordering::AcqRel);
    }

    /// SET_MEMSEG: `acrn_vm_memseg_map` / `acrn_vm_ram_map`.
    fn set_memseg(&self, b: &[u8]) -> Result<i64, Errno> {
        use abi::memmap as o;
        let vm = &self.vm;
        let ty = le::u32_at(b, o::TYPE);
        let attr = le::u32_at(b, o::ATTR);
        let gpa = le::u64_at(b, o::USER_VM_PA);
        let base = le::u64_at(b, o::VMA_BASE);
        let len = le::u64_at(b, o::LEN);
        let hv_ret = |r: i64| {
            if r < 0 {
                Err(Errno::from_negative(r))
            } else {
                Ok(r)
            }
        };
        match ty {
            abi::MEMMAP_RAM => {
                // Current acrn_vm_ram_map refuses a length below one page with EINVAL (before
                // 2024, `vzalloc(0)` failed with ENOMEM); nr_pages is an int (`len >> 12`
                // truncated), and a count that does not fit fails the allocation (ENOMEM).
                if len < PAGE_SIZE as u64 {
                    return Err(Errno::EINVAL);
                }
                let nr_pages = (len >> 12) as i32;
                if nr_pages <= 0 {
                    return Err(Errno::ENOMEM);
                }
                let pages = memory::pin(
                    base & !(PAGE_SIZE as u64 - 1),
                    nr_pages as usize * PAGE_SIZE,
                )?;
                let mut inner = lock(&vm.inner);
                if inner.regions_mapping_count >= abi::MEM_MAPPING_MAX {
                    return Err(Errno::ENOMEM);
                }
                inner.regions_mapping_count += 1;
                let op = (
                    0,
                    gpa,
                    pages.addr(),
                    nr_pages as u64 * PAGE_SIZE as u64,
                    0x40 | (attr & abi::MEM_ACCESS_RIGHT_MASK),
                );
                let r = self.hv.set_memory_regions(vm.vmid(), &[op]);
                if r < 0 {
                    inner.regions_mapping_count -= 1;
                    return hv_ret(r);
                }
                inner.ram.push(pages);
                Ok(r)
            }
            abi::MEMMAP_MMIO => {
                let op = (
                    0,
                    gpa,
                    base,
                    len,
                    0x100 | (attr & abi::MEM_ACCESS_RIGHT_MASK),
                );
                hv_ret(self.hv.set_memory_regions(vm.vmid(), &[op]))
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// IOEVENTFD: `acrn_ioeventfd_config`.
    fn ioeventfd(&self, b: &[u8]) -> Result<i64, Errno> {
        use abi::ioeventfd as o;
        if le::u32_at(b, o::RESERVED) != 0 {
            return Err(Errno::EINVAL);
        }
        let flags = le::u32_at(b, o::FLAGS);
        let addr = le::u64_at(b, o::ADDR);
        let len = u64::from(le::u32_at(b, o::LEN));
        let data = le::u64_at(b, o::DATA);
        let ty = if flags & abi::IOEVENTFD_FLAG_PIO != 0 {
            abi::TYPE_PORTIO
        } else {
            abi::TYPE_MMIO
        };
        let wildcard = flags & abi::IOEVENTFD_FLAG_DATAMATCH == 0;
        let _cfg = lock(&self.vm.ioeventfd_cfg);
        let mut inner = lock(&self.vm.inner);
        if flags & abi::IOEVENTFD_FLAG_DEASSIGN != 0 {
            let (_fd, key) = eventfd_get(le::u32_at(b, o::FD) as i32)?;
            // acrn_ioeventfd_deassign: the first entry with this eventfd, whatever the
            // address, type or datamatch given.
            if let Some(i) = inner.ioeventfds.iter().position(|p| p.key == key) {
                let p = inner.ioeventfds.remove(i);
                let mirror = (p.key, p.ty == abi::TYPE_PORTIO, p.addr);
                if let Some(c) = &inner.ioeventfd_client {
                    let mut r = lock(&c.ranges);
                    if let Some(j) = r.iter().position(|&(t, s, e)| {
                        t == p.ty && s == p.addr && e == p.addr + p.length - 1
                    }) {
                        r.remove(j);
                    }
                }
                drop(inner);
                if let Some(v) = self.vm.hv_vm().filter(|v| v.vmid == self.vm.vmid()) {
                    v.kvm.remove_ioeventfd(mirror.0, mirror.1, mirror.2);
                }
            }
            return Ok(0);
        }
        if !matches!(len, 1 | 2 | 4 | 8) {
            return Err(Errno::EINVAL);
        }
        if addr.checked_add(len).is_none() {
            return Err(Errno::EINVAL);
        }
        let (fd, key) = eventfd_get(le::u32_at(b, o::FD) as i32)?;
        if inner.ioeventfds.iter().any(|p| {
            p.key == key
                && p.addr == addr
                && p.ty == ty
                && (p.wildcard || wildcard || p.data == data)
        }) {
            return Err(Errno::EEXIST);
        }
        let Some(c) = inner.ioeventfd_client.clone() else {
            return Err(Errno::EINVAL);
        };
        lock(&c.ranges).push((ty, addr, addr + len - 1));
        // On the KVM engine KVM matches it too (`kvm_state::KvmIoeventfd`), unless the
        // hypervisor's own handlers, which come first, may claim the range.
        let mirror =
            if self.hv.kvm_ioeventfd.load(Ordering::Acquire) && !Hv::hv_may_claim(ty, addr, len) {
                fd.try_clone().ok()
            } else {
                None
            };
        inner.ioeventfds.push(IoEventFd {
            fd,
            key,
            ty,
            addr,
            length: len,
            data,
            wildcard,
        });
        drop(inner);
        if let (Some(v), Some(dup)) = (self.vm.hv_vm().filter(|v| v.vmid == self.vm.vmid()), mirror)
        {
            v.kvm.add_ioeventfd(crate::kvm_state::KvmIoeventfd {
                fd: dup,
                key,
                pio: ty == abi::TYPE_PORTIO,
                addr,
                len: len as u32,
                datamatch: (!wildcard).then_some(data),
            });
        }
        Ok(0)
    }
}

impl HsmBackend for EmulatedHsm {
    fn ioctl(&self, request: u32, arg: IoctlArg<'_>) -> Result<i64, Errno> {
        self.dispatch_ioctl(request, arg)
    }

    fn name(&self) -> String {
        "emulator".to_string()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Drop for EmulatedHsm {
    /// `acrn_dev_release`: `acrn_vm_destroy`, result ignored.
    ///
    /// When the hypervisor refuses (the VM is not paused) the kernel frees the `acrn_vm` while
    /// it is still on `acrn_vm_list`, its clients and ioreq page still in place: the hypervisor's
    /// VM goes on running, orphaned, and its next requests are never completed. The emulator
    /// keeps that outcome but unlinks and tears down the HSM side instead of leaving a dangling
    /// entry for the dispatcher.
    fn drop(&mut self) {
        if self.destroy_vm() < 0 {
            self.teardown();
        }
        self.vm.irqfds.clear();
    }
}
