//! IRQFD: an eventfd whose signal injects an MSI (`drivers/virt/acrn/irqfd.c`).
//!
//! The kernel hooks the eventfd's wait queue (`hsm_irqfd_wakeup`): every signal wakes it and
//! injects once, and the counter is never read, so a second signal while the counter is still
//! nonzero injects again. The emulator gets the same from one `epoll` set per VM with irqfds,
//! each eventfd registered edge-triggered (`EPOLLET`: one event per wake-up, whatever the
//! counter holds), and one poller thread blocked in `epoll_wait` (never spinning, not on the
//! ioreq path). Registering reports a counter that is already nonzero once, as the kernel's
//! `vfs_poll` check at assign does; deassign empties the counter, as
//! `eventfd_ctx_remove_wait_queue` does. Each injection goes through the hypervisor's MSI check
//! (`acrn_msi_inject` → `hcall_inject_msi`) and is recorded as an [`InterruptEvent::IrqfdMsi`].

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::errno::Errno;
use crate::hv::Hv;
use crate::types::{InterruptEvent, lock};

struct Irqfd {
    fd: Arc<OwnedFd>,
    key: (u64, u64),
    token: u64,
    vmid: u16,
    addr: u64,
    data: u64,
}

struct Poller {
    epoll: Arc<OwnedFd>,
    ctl: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The irqfds of one VM and their poller.
pub(crate) struct IrqfdSet {
    hv: Arc<Hv>,
    list: Arc<Mutex<Vec<Irqfd>>>,
    poller: Mutex<Option<Poller>>,
    next_token: AtomicU64,
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

fn new_epoll() -> Result<OwnedFd, Errno> {
    // SAFETY: creates a new descriptor; the result is checked.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

fn epoll_ctl(epoll: &OwnedFd, op: i32, fd: &OwnedFd, events: u32, token: u64) -> Result<(), Errno> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: both descriptors are open (owned by the caller) and `ev` is a live local.
    let r = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd.as_raw_fd(), &raw mut ev) };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Empties an eventfd's counter without blocking (the dup may be blocking: use `poll` first).
fn drain_counter(fd: &OwnedFd) {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd for an open descriptor; timeout 0.
    let n = unsafe { libc::poll(&raw mut p, 1, 0) };
    if n == 1 && p.revents & libc::POLLIN != 0 {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live local; the counter is nonzero, so it does not block
        // (a concurrent reader could empty it first: the descriptor is the caller's dup, and
        // the emulator is the only reader of it).
        let _ = unsafe { libc::read(fd.as_raw_fd(), (&raw mut v).cast::<libc::c_void>(), 8) };
    }
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
            next_token: AtomicU64::new(1),
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
        let epoll = self.ensure_poller()?;
        let fd = Arc::new(fd);
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        {
            let mut list = lock(&self.list);
            if list.iter().any(|i| i.key == key) {
                return Err(Errno::EBUSY);
            }
            list.push(Irqfd {
                fd: fd.clone(),
                key,
                token,
                vmid,
                addr,
                data,
            });
        }
        if let Err(e) = epoll_ctl(
            &epoll,
            libc::EPOLL_CTL_ADD,
            &fd,
            (libc::EPOLLIN | libc::EPOLLET) as u32,
            token,
        ) {
            lock(&self.list).retain(|i| i.token != token);
            return Err(e);
        }
        Ok(())
    }

    /// `acrn_irqfd_deassign`: 0 whether or not it was assigned; the counter is emptied.
    pub(crate) fn deassign(&self, key: (u64, u64)) {
        let removed: Vec<Irqfd> = {
            let mut list = lock(&self.list);
            let (gone, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|i| i.key == key);
            *list = keep;
            gone
        };
        let epoll = lock(&self.poller).as_ref().map(|p| p.epoll.clone());
        for i in removed {
            if let Some(ep) = &epoll {
                let _ = epoll_ctl(ep, libc::EPOLL_CTL_DEL, &i.fd, 0, 0);
            }
            drain_counter(&i.fd);
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

    fn ensure_poller(&self) -> Result<Arc<OwnedFd>, Errno> {
        let mut guard = lock(&self.poller);
        if let Some(p) = guard.as_ref() {
            return Ok(p.epoll.clone());
        }
        let epoll = Arc::new(new_epoll()?);
        let ctl = Arc::new(new_eventfd()?);
        epoll_ctl(
            &epoll,
            libc::EPOLL_CTL_ADD,
            &ctl,
            (libc::EPOLLIN | libc::EPOLLET) as u32,
            0,
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let (list, hv, ep2, stop2) = (
            self.list.clone(),
            self.hv.clone(),
            epoll.clone(),
            stop.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("acrn-irqfd".into())
            .spawn(move || poll_loop(&list, &hv, &ep2, &stop2))
            .map_err(Errno::from)?;
        *guard = Some(Poller {
            epoll: epoll.clone(),
            ctl,
            stop,
            thread,
        });
        Ok(epoll)
    }
}

fn poll_loop(list: &Mutex<Vec<Irqfd>>, hv: &Hv, epoll: &OwnedFd, stop: &AtomicBool) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
    loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: `events` is a live array of 16 epoll_event structs and `epoll` is open.
        let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), 16, -1) };
        if n <= 0 {
            continue;
        }
        for ev in &events[..n as usize] {
            let token = ev.u64;
            if token == 0 {
                // The control eventfd (edge-triggered too): only wakes the loop to check `stop`.
                continue;
            }
            let target = lock(list)
                .iter()
                .find(|i| i.token == token)
                .map(|i| (i.vmid, i.addr, i.data));
            // Deassigned meanwhile: dropped, as after the kernel removed its wait-queue hook.
            if let Some((vmid, addr, data)) = target {
                hv.inject_msi(vmid, addr, InterruptEvent::IrqfdMsi { vmid, addr, data });
            }
        }
    }
}
