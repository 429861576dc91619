//! IRQFD: an eventfd whose signal injects an MSI (`drivers/virt/acrn/irqfd.c`).
//!
//! The kernel hooks the eventfd's wait queue; the emulator runs one poller thread per VM with
//! irqfds (blocked in `poll(2)`, never spinning, and not on the ioreq path). Each signal is
//! recorded as an [`InterruptEvent::Msi`] with `source: Irqfd`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::InterruptEvent;
use crate::errno::Errno;
use crate::hv::{Hv, lock};

struct Irqfd {
    fd: Arc<OwnedFd>,
    key: (u64, u64),
    vmid: u16,
    addr: u64,
    data: u64,
}

struct Poller {
    ctl: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The irqfds of one VM and their poller.
pub(crate) struct IrqfdSet {
    hv: Arc<Hv>,
    list: Arc<Mutex<Vec<Irqfd>>>,
    poller: Mutex<Option<Poller>>,
}

fn new_eventfd() -> Result<OwnedFd, Errno> {
    // SAFETY: creates a new descriptor; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

fn read_counter(fd: &OwnedFd) -> u64 {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a live local from an owned (non-blocking) eventfd.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut v).cast::<libc::c_void>(), 8) };
    if n == 8 { v } else { 0 }
}

fn poke(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live local to an owned eventfd.
    let _ = unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast::<libc::c_void>(), 8) };
}

impl IrqfdSet {
    pub(crate) fn new(hv: Arc<Hv>) -> IrqfdSet {
        IrqfdSet {
            hv,
            list: Arc::new(Mutex::new(Vec::new())),
            poller: Mutex::new(None),
        }
    }

    /// `acrn_irqfd_assign`: the same eventfd twice is `EBUSY`.
    pub(crate) fn assign(
        &self,
        vmid: u16,
        fd: OwnedFd,
        key: (u64, u64),
        addr: u64,
        data: u64,
    ) -> Result<(), Errno> {
        {
            let mut list = lock(&self.list);
            if list.iter().any(|i| i.key == key) {
                return Err(Errno::EBUSY);
            }
            list.push(Irqfd {
                fd: Arc::new(fd),
                key,
                vmid,
                addr,
                data,
            });
        }
        self.ensure_poller()
    }

    /// `acrn_irqfd_deassign`: 0 whether or not it was assigned.
    pub(crate) fn deassign(&self, key: (u64, u64)) {
        lock(&self.list).retain(|i| i.key != key);
        if let Some(p) = lock(&self.poller).as_ref() {
            poke(&p.ctl);
        }
    }

    /// `acrn_irqfd_deinit`: drops every irqfd and stops the poller.
    pub(crate) fn clear(&self) {
        lock(&self.list).clear();
        let p = lock(&self.poller).take();
        if let Some(p) = p {
            p.stop.store(true, Ordering::Release);
            poke(&p.ctl);
            let _ = p.thread.join();
        }
    }

    fn ensure_poller(&self) -> Result<(), Errno> {
        let mut guard = lock(&self.poller);
        if let Some(p) = guard.as_ref() {
            poke(&p.ctl);
            return Ok(());
        }
        let ctl = Arc::new(new_eventfd()?);
        let stop = Arc::new(AtomicBool::new(false));
        let (list, hv, ctl2, stop2) = (
            self.list.clone(),
            self.hv.clone(),
            ctl.clone(),
            stop.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("acrn-irqfd".into())
            .spawn(move || poll_loop(&list, &hv, &ctl2, &stop2))
            .map_err(Errno::from)?;
        *guard = Some(Poller { ctl, stop, thread });
        Ok(())
    }
}

fn poll_loop(list: &Mutex<Vec<Irqfd>>, hv: &Hv, ctl: &OwnedFd, stop: &AtomicBool) {
    loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let snapshot: Vec<(Arc<OwnedFd>, u16, u64, u64)> = lock(list)
            .iter()
            .map(|i| (i.fd.clone(), i.vmid, i.addr, i.data))
            .collect();
        let mut fds: Vec<libc::pollfd> = std::iter::once(ctl.as_raw_fd())
            .chain(snapshot.iter().map(|s| s.0.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structs; every fd is kept open by
        // the Arcs in `snapshot` (or is `ctl`) for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue;
        }
        if fds[0].revents != 0 {
            read_counter(ctl);
        }
        for (pfd, (fd, vmid, addr, data)) in fds[1..].iter().zip(&snapshot) {
            // Deassigned meanwhile (the snapshot is stale): drop the signal, as the kernel
            // would after removing its wait-queue hook.
            let live = lock(list).iter().any(|i| Arc::ptr_eq(&i.fd, fd));
            if pfd.revents & libc::POLLIN != 0 && read_counter(fd) > 0 && live {
                hv.interrupt(
                    *vmid,
                    InterruptEvent::IrqfdMsi {
                        vmid: *vmid,
                        addr: *addr,
                        data: *data,
                    },
                );
            }
        }
    }
}
