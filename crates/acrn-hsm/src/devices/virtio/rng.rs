//! virtio-rng (virtio 1.x §5.4): one request queue; the device fills each chain's
//! device-writable buffers with bytes from the host's `getrandom`.

use super::device::{TYPE_RNG, VirtioDevice};
use super::queue::{DescChain, QueueError};
use crate::guest_memory::GuestMemory;

const QUEUE_SIZE: u16 = 64;
/// At most this many bytes per request (a driver asking for more gets a short answer).
const MAX_REQUEST: usize = 64 * 1024;

/// An entropy device.
#[derive(Debug, Default)]
pub struct VirtioRng {
    bytes: u64,
}

impl VirtioRng {
    /// A new device.
    pub fn new() -> VirtioRng {
        VirtioRng::default()
    }

    /// Bytes handed to the guest so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

fn fill_random(buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`, which we own.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
    done
}

impl VirtioDevice for VirtioRng {
    fn name(&self) -> &str {
        "rng"
    }
    fn device_type(&self) -> u16 {
        TYPE_RNG
    }
    fn features(&self) -> u64 {
        0
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn process(
        &mut self,
        _queue: u16,
        chain: &DescChain,
        mem: &GuestMemory,
    ) -> Result<u32, QueueError> {
        let want = (chain.writable_len() as usize).min(MAX_REQUEST);
        let mut buf = vec![0u8; want];
        let n = fill_random(&mut buf);
        let w = chain.write_at(mem, 0, &buf[..n])?;
        self.bytes += w as u64;
        Ok(w as u32)
    }
}
