//! [`EventFd`]: a Linux eventfd (a 64-bit counter behind a file descriptor), what IOEVENTFD and
//! IRQFD take. Non-blocking: [`EventFd::read`] answers `None` when the counter is zero, and
//! [`EventFd::wait`] blocks in `poll` until it is not, or until [`EventFd::cancel`] (so a waiter
//! on another thread never blocks a close).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::errno::Errno;

/// An eventfd and the internal one that cancels waits.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
    cancel: OwnedFd,
}

fn eventfd(initial: u32, flags: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: creates a new descriptor; the result is checked before it is owned.
    let fd = unsafe { libc::eventfd(initial, flags | libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read_counter(fd: &OwnedFd) -> Result<Option<u64>, Errno> {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v`, a valid 8-byte buffer; the descriptor is owned.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut v).cast::<libc::c_void>(), 8) };
    if n == 8 {
        return Ok(Some(v));
    }
    match Errno::last() {
        Errno::EAGAIN => Ok(None),
        e => Err(e),
    }
}

impl EventFd {
    /// A new eventfd with counter `initial`; `semaphore` makes each read take 1
    /// (`EFD_SEMAPHORE`) instead of the whole counter.
    pub fn new(initial: u32, semaphore: bool) -> Result<EventFd, Errno> {
        let flags = if semaphore { libc::EFD_SEMAPHORE } else { 0 };
        Ok(EventFd {
            fd: eventfd(initial, flags)?,
            cancel: eventfd(0, 0)?,
        })
    }

    /// The descriptor (for IOEVENTFD/IRQFD), valid while this value lives.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Adds `n` to the counter (`EINVAL` for `u64::MAX`; `EAGAIN` if it would overflow).
    pub fn write(&self, n: u64) -> Result<(), Errno> {
        // SAFETY: writes the 8 bytes of `n`; the descriptor is owned.
        let r = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&raw const n).cast::<libc::c_void>(),
                8,
            )
        };
        if r == 8 { Ok(()) } else { Err(Errno::last()) }
    }

    /// Takes the counter (or 1 of it, for a semaphore), `None` when it is zero.
    pub fn read(&self) -> Result<Option<u64>, Errno> {
        read_counter(&self.fd)
    }

    /// Blocks until the counter is nonzero and takes it (as [`read`](Self::read)); `None` once
    /// [`cancel`](Self::cancel) was called.
    pub fn wait(&self) -> Result<Option<u64>, Errno> {
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.cancel.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid array of 2 pollfd; both descriptors are owned.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if r < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    e => return Err(e),
                }
            }
            if fds[1].revents != 0 {
                return Ok(None);
            }
            if fds[0].revents != 0 {
                // Another reader may have taken it first: then wait again.
                if let Some(v) = self.read()? {
                    return Ok(Some(v));
                }
            }
        }
    }

    /// Makes every current and later [`wait`](Self::wait) return `None` (before a close).
    pub fn cancel(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes to the owned cancel eventfd; a failure (counter saturated)
        // leaves it readable, which is all a cancel needs.
        let _ = unsafe {
            libc::write(
                self.cancel.as_raw_fd(),
                (&raw const one).cast::<libc::c_void>(),
                8,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counter_read_write_and_semaphore() {
        let e = EventFd::new(0, false).unwrap();
        assert_eq!(e.read().unwrap(), None);
        e.write(3).unwrap();
        e.write(4).unwrap();
        assert_eq!(e.read().unwrap(), Some(7));
        assert_eq!(e.read().unwrap(), None);
        assert_eq!(e.write(u64::MAX), Err(Errno::EINVAL));
        let s = EventFd::new(2, true).unwrap();
        assert_eq!(s.read().unwrap(), Some(1));
        assert_eq!(s.read().unwrap(), Some(1));
        assert_eq!(s.read().unwrap(), None);
    }

    #[test]
    fn wait_wakes_on_write_and_on_cancel() {
        let e = Arc::new(EventFd::new(0, false).unwrap());
        let w = {
            let e = e.clone();
            std::thread::spawn(move || e.wait())
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        e.write(5).unwrap();
        assert_eq!(w.join().unwrap().unwrap(), Some(5));
        let w = {
            let e = e.clone();
            std::thread::spawn(move || e.wait())
        };
        e.cancel();
        assert_eq!(w.join().unwrap().unwrap(), None);
    }
}
