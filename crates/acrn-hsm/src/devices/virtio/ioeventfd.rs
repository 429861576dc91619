//! Queue notifications through IOEVENTFD: the fast path of a native virtio-pci device.
//!
//! Without it every write to a queue's notify address is an I/O request the ioreq client
//! serves (vCPU exit → slot → client wake-up → the BAR handler → completion → vCPU wake-up).
//! With a [`QueueNotifier`] attached, each queue has an eventfd registered with the HSM's
//! IOEVENTFD on its notify address (`BAR 4 + NOTIFY_OFFSET + NOTIFY_OFF_MULTIPLIER * q`,
//! 2 bytes, any value) while the driver may notify (DRIVER_OK, BAR 4 decoded): the HSM's
//! in-kernel ioeventfd client completes the request itself (`acrn_ioeventfd_handler`: a write
//! signals the eventfd, nothing reaches the ioreq client) and the vCPU goes on at once. A worker
//! thread waits on the eventfds and serves the signalled queue as a BAR notify would
//! ([`VirtioPci::notify_queue`]: the same lock, the same chain processing, so exactly-once and
//! the reset epochs of deferred chains are the transport's), raising the interrupts through the
//! transport's [`InterruptSink`](super::InterruptSink) (INJECT_MSI / SET_IRQLINE).
//!
//! Registration follows the transport's notify hook ([`VirtioPci::set_notify_hook`]): assigned
//! on DRIVER_OK, moved with the BAR, deassigned on reset, when BAR 4 stops being decoded and
//! on [`QueueNotifier::detach`] (or drop). A notification written while nothing is registered
//! (before DRIVER_OK, between a deassign and the next assign) is an ordinary request, served by
//! the BAR handler: none is lost. An eventfd's counter folds several notifications into one
//! wake-up, which serves the queue until it is empty, as one notification would.
//!
//! A device whose chains are deferred ([`DeferredVirtio`](super::DeferredVirtio)) works too,
//! but its deferred hook then runs on the worker thread, outside any request: a hook that
//! holds the notify's request until the chains come back
//! ([`ClientHandle::wake_batch_holding`](crate::client::ClientHandle::wake_batch_holding), the
//! TypeScript binding's) does not belong with a notifier (there is no request to hold).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::pci::{NOTIFY_OFF_MULTIPLIER, VirtioPci};
use crate::errno::Errno;
use crate::eventfd::EventFd;
use crate::vm::{IoEventFd, Vm};

/// `ACRN_IOEVENTFD_FLAG_DEASSIGN`.
const FLAG_DEASSIGN: u32 = 0x04;
/// The notify write's width (virtio 1.x §4.1.5.2: a 16-bit queue index).
const NOTIFY_LEN: u32 = 2;

/// Counters of a [`QueueNotifier`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifierStats {
    /// Wake-ups of the worker by a queue eventfd (each serves its queue once).
    pub wakeups: u64,
    /// Notify areas registered (an IOEVENTFD per queue each).
    pub registrations: u64,
    /// IOEVENTFD calls the HSM refused (the notifications then stay ordinary requests).
    pub errors: u64,
}

struct Shared {
    vm: Arc<Vm>,
    fds: Vec<EventFd>,
    /// Queues whose eventfd is assigned now, and at which notify area.
    assigned: Mutex<(Option<u64>, Vec<bool>)>,
    wakeups: AtomicU64,
    registrations: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn ioctl(&self, q: usize, addr: u64, flags: u32) -> bool {
        let r = self.vm.ioeventfd(&IoEventFd {
            fd: self.fds[q].fd(),
            flags,
            addr,
            len: NOTIFY_LEN,
            data: 0,
        });
        if r.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        r.is_ok()
    }

    /// The notify hook: deassign what is assigned, then assign at `area`.
    fn move_to(&self, area: Option<u64>, queues: u16) {
        let mut a = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = a.0.take() {
            for q in 0..a.1.len() {
                if std::mem::take(&mut a.1[q]) {
                    self.ioctl(
                        q,
                        old + u64::from(NOTIFY_OFF_MULTIPLIER) * q as u64,
                        FLAG_DEASSIGN,
                    );
                }
            }
        }
        let Some(area) = area else { return };
        let n = usize::from(queues).min(self.fds.len());
        let mut any = false;
        for q in 0..n {
            let ok = self.ioctl(q, area + u64::from(NOTIFY_OFF_MULTIPLIER) * q as u64, 0);
            a.1[q] = ok;
            any |= ok;
        }
        if any {
            a.0 = Some(area);
            self.registrations.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Queue notifications of one [`VirtioPci`] through IOEVENTFD and a worker thread (see the
/// module documentation).
pub struct QueueNotifier {
    transport: VirtioPci,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for QueueNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueNotifier")
            .field("queues", &self.shared.fds.len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl QueueNotifier {
    /// Attaches to `transport` of a device of `vm`: one eventfd per queue, the worker thread,
    /// and the transport's notify hook (registering at once if the driver already set
    /// DRIVER_OK). Errors: creating an eventfd or the thread failed.
    pub fn attach(transport: &VirtioPci, vm: Arc<Vm>) -> Result<QueueNotifier, Errno> {
        let n = usize::from(transport.num_queues());
        let fds = (0..n)
            .map(|_| EventFd::new(0, false))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            vm,
            fds,
            assigned: Mutex::new((None, vec![false; n])),
            wakeups: AtomicU64::new(0),
            registrations: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(EventFd::new(0, false)?);
        let (t2, s2, stop2, wake2) = (
            transport.clone(),
            shared.clone(),
            stop.clone(),
            wake.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("virtio-notify".into())
            .spawn(move || worker(&t2, &s2, &stop2, &wake2))
            .map_err(|_| Errno::EAGAIN)?;
        let s3 = shared.clone();
        transport.set_notify_hook(Some(Arc::new(move |area, queues| {
            s3.move_to(area, queues);
        })));
        Ok(QueueNotifier {
            transport: transport.clone(),
            shared,
            stop,
            wake,
            thread: Some(thread),
        })
    }

    /// The counters.
    pub fn stats(&self) -> NotifierStats {
        NotifierStats {
            wakeups: self.shared.wakeups.load(Ordering::Relaxed),
            registrations: self.shared.registrations.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
        }
    }

    /// The notify area the eventfds are assigned at now, if any.
    pub fn registered_at(&self) -> Option<u64> {
        self.shared
            .assigned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    /// Deassigns the eventfds, removes the hook and ends the worker (what drop does).
    pub fn detach(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // The hook is told `None` (deassigning) before it goes.
        self.transport.set_notify_hook(None);
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for QueueNotifier {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}

/// Waits on every queue's eventfd (and `wake`), serving each signalled queue.
fn worker(t: &VirtioPci, s: &Shared, stop: &AtomicBool, wake: &EventFd) {
    let n = s.fds.len();
    let mut fds: Vec<libc::pollfd> = s
        .fds
        .iter()
        .map(|e| e.fd())
        .chain(std::iter::once(wake.fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: `fds` is a live array of `n + 1` pollfd structs whose descriptors are owned
        // by `s` and `wake`, both alive for the whole loop.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), (n + 1) as libc::nfds_t, -1) };
        if r <= 0 {
            continue;
        }
        for (q, p) in fds.iter_mut().enumerate().take(n) {
            if p.revents == 0 {
                continue;
            }
            p.revents = 0;
            // Take the counter before serving: a notification after this read signals again.
            if let Ok(Some(_)) = s.fds[q].read() {
                s.wakeups.fetch_add(1, Ordering::Relaxed);
                t.notify_queue(q as u16);
            }
        }
        if fds[n].revents != 0 {
            fds[n].revents = 0;
            let _ = wake.read();
        }
    }
}
