//! Interrupts that reach the guest (workload engine): the per-VM line state of the vIOAPIC/vPIC
//! and a per-vCPU record of pending vectors, as ACRN's vLAPIC would hold them in its IRR.
//!
//! * SET_IRQLINE (`hcall_set_irqline` → `vioapic_set_irqline_lock` / `vpic_set_irqline`): the
//!   operations are ACRN's `GSI_SET_HIGH` (0), `GSI_SET_LOW` (1), `GSI_RAISING_PULSE` (2),
//!   `GSI_FALLING_PULSE` (3). A low-to-high transition (a raising pulse is one, a falling pulse
//!   ends high again after dropping, so it is one too if the line was high) counts one edge.
//! * INJECT_MSI and irqfd (`vlapic_inject_msi`): the destination is the address's bits 19:12
//!   (`MSI_ADDR_DEST`), physical mode (bit 2 clear) names one vLAPIC ID, which is the vCPU id of
//!   a post-launched VM, 0xFF all of them; logical mode (bit 2 set) is taken as the flat model
//!   (a bit per vCPU). The vector is the data's bits 7:0. Each delivery sets the vector pending
//!   on each destination vCPU (counted, so two deliveries before the guest takes one are two).
//!
//! A workload's `wait_irq` takes one pending vector (or one edge of a GSI, or finds the line
//! high: a level interrupt stays asserted until its device lowers it) and blocks until there is
//! one. The KVM engine does not use this: its interrupts go to KVM's in-kernel irqchip.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::types::{VIOAPIC_RTE_NUM, lock};

const GSI_SET_HIGH: u32 = 0;
const GSI_SET_LOW: u32 = 1;
const GSI_RAISING_PULSE: u32 = 2;
const GSI_FALLING_PULSE: u32 = 3;

/// What a `wait_irq` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqWait {
    /// A vector pending on the waiting vCPU (an MSI).
    Vector(u8),
    /// An edge on a GSI (or the line high).
    Gsi(u32),
}

/// Counters of a VM's interrupts that reached the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IrqCounters {
    /// MSIs delivered to at least one vCPU.
    pub msi: u64,
    /// Vector deliveries per vCPU (one MSI to two vCPUs counts two).
    pub delivered: Vec<u64>,
    /// Rising edges per GSI (index = GSI, 48 entries).
    pub edges: Vec<u64>,
    /// Line levels per GSI.
    pub levels: Vec<bool>,
    /// Interrupts taken by `wait_irq`.
    pub taken: u64,
}

struct State {
    levels: Vec<bool>,
    edges: Vec<u64>,
    /// Edges not yet taken by a `wait_irq`, per GSI.
    edge_pending: Vec<u64>,
    /// Pending count of each vector, per vCPU (256 per vCPU).
    pending: Vec<Vec<u32>>,
    delivered: Vec<u64>,
    msi: u64,
    taken: u64,
}

/// A VM's interrupt state (`HvVm::irq`).
pub(crate) struct VmIrq {
    state: Mutex<State>,
    cv: Condvar,
}

impl VmIrq {
    pub(crate) fn new(vcpus: usize) -> VmIrq {
        let n = VIOAPIC_RTE_NUM as usize;
        VmIrq {
            state: Mutex::new(State {
                levels: vec![false; n],
                edges: vec![0; n],
                edge_pending: vec![0; n],
                pending: vec![vec![0; 256]; vcpus],
                delivered: vec![0; vcpus],
                msi: 0,
                taken: 0,
            }),
            cv: Condvar::new(),
        }
    }

    /// Clears everything (RESET_VM).
    pub(crate) fn reset(&self) {
        let mut s = lock(&self.state);
        s.levels.fill(false);
        s.edges.fill(0);
        s.edge_pending.fill(0);
        for p in &mut s.pending {
            p.fill(0);
        }
        s.delivered.fill(0);
        s.msi = 0;
        s.taken = 0;
        drop(s);
        self.cv.notify_all();
    }

    /// SET_IRQLINE (`gsi` already checked below 48). An unknown `op` changes nothing.
    pub(crate) fn set_line(&self, gsi: u32, op: u32) {
        let g = gsi as usize;
        let mut s = lock(&self.state);
        let Some(&was) = s.levels.get(g) else { return };
        let (edge, now) = match op {
            GSI_SET_HIGH => (!was, true),
            GSI_SET_LOW => (false, false),
            GSI_RAISING_PULSE => (true, false),
            GSI_FALLING_PULSE => (was, true),
            _ => return,
        };
        s.levels[g] = now;
        if edge {
            s.edges[g] += 1;
            s.edge_pending[g] += 1;
        }
        drop(s);
        if edge || now {
            self.cv.notify_all();
        }
    }

    /// An MSI (address already checked to be 0xFEExxxxx).
    pub(crate) fn msi(&self, addr: u64, data: u64) {
        let dest = ((addr >> 12) & 0xff) as usize;
        let logical = addr & 0x4 != 0;
        let vector = (data & 0xff) as usize;
        let mut s = lock(&self.state);
        let n = s.pending.len();
        let mut any = false;
        for v in 0..n {
            let hit = if logical {
                v < 8 && dest & (1 << v) != 0
            } else {
                dest == 0xff || dest == v
            };
            if hit {
                s.pending[v][vector] = s.pending[v][vector].saturating_add(1);
                s.delivered[v] += 1;
                any = true;
            }
        }
        if any {
            s.msi += 1;
        }
        drop(s);
        if any {
            self.cv.notify_all();
        }
    }

    /// The counters.
    pub(crate) fn counters(&self) -> IrqCounters {
        let s = lock(&self.state);
        IrqCounters {
            msi: s.msi,
            delivered: s.delivered.clone(),
            edges: s.edges.clone(),
            levels: s.levels.clone(),
            taken: s.taken,
        }
    }

    fn take(s: &mut State, vcpu: usize, what: IrqWait) -> bool {
        let ok = match what {
            IrqWait::Vector(v) => match s.pending.get_mut(vcpu) {
                Some(p) if p[usize::from(v)] > 0 => {
                    p[usize::from(v)] -= 1;
                    true
                }
                _ => false,
            },
            IrqWait::Gsi(g) => {
                let g = g as usize;
                if s.edge_pending.get(g).is_some_and(|&e| e > 0) {
                    s.edge_pending[g] -= 1;
                    true
                } else {
                    s.levels.get(g).copied().unwrap_or(false)
                }
            }
        };
        if ok {
            s.taken += 1;
        }
        ok
    }

    /// Blocks vCPU `vcpu` until `what` is pending and takes it: `Ok(())`; `Err(true)` at the
    /// timeout, `Err(false)` when `stop()` says so (checked every few milliseconds).
    pub(crate) fn wait(
        &self,
        vcpu: usize,
        what: IrqWait,
        timeout: Duration,
        stop: impl Fn() -> bool,
    ) -> Result<(), bool> {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.state);
        loop {
            if Self::take(&mut s, vcpu, what) {
                return Ok(());
            }
            if stop() {
                return Err(false);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(true);
            }
            let slice = (deadline - now).min(Duration::from_millis(5));
            s = match self.cv.wait_timeout(s, slice) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msi_reaches_its_destination_only() {
        let irq = VmIrq::new(2);
        irq.msi(0xfee0_1000, 0x41);
        let never = || false;
        assert_eq!(
            irq.wait(0, IrqWait::Vector(0x41), Duration::ZERO, never),
            Err(true)
        );
        assert_eq!(
            irq.wait(1, IrqWait::Vector(0x41), Duration::ZERO, never),
            Ok(())
        );
        assert_eq!(
            irq.wait(1, IrqWait::Vector(0x41), Duration::ZERO, never),
            Err(true)
        );
        irq.msi(0xfeef_f000, 0x30);
        assert_eq!(irq.counters().delivered, vec![1, 2]);
        assert_eq!(irq.counters().msi, 2);
    }

    #[test]
    fn line_edges_and_levels() {
        let irq = VmIrq::new(1);
        let never = || false;
        irq.set_line(4, GSI_RAISING_PULSE);
        assert_eq!(irq.wait(0, IrqWait::Gsi(4), Duration::ZERO, never), Ok(()));
        assert_eq!(
            irq.wait(0, IrqWait::Gsi(4), Duration::ZERO, never),
            Err(true)
        );
        irq.set_line(5, GSI_SET_HIGH);
        irq.set_line(5, GSI_SET_HIGH);
        assert_eq!(irq.counters().edges[5], 1);
        // Edge taken, then the level is still high.
        assert_eq!(irq.wait(0, IrqWait::Gsi(5), Duration::ZERO, never), Ok(()));
        assert_eq!(irq.wait(0, IrqWait::Gsi(5), Duration::ZERO, never), Ok(()));
        irq.set_line(5, GSI_SET_LOW);
        assert_eq!(
            irq.wait(0, IrqWait::Gsi(5), Duration::ZERO, never),
            Err(true)
        );
    }

    #[test]
    fn a_waiter_wakes_when_the_interrupt_arrives() {
        let irq = std::sync::Arc::new(VmIrq::new(1));
        let w = {
            let irq = irq.clone();
            std::thread::spawn(move || {
                irq.wait(0, IrqWait::Vector(0x50), Duration::from_secs(10), || false)
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        irq.msi(0xfee0_0000, 0x50);
        assert_eq!(w.join().unwrap(), Ok(()));
        assert_eq!(
            irq.wait(0, IrqWait::Gsi(1), Duration::from_secs(10), || true),
            Err(false)
        );
    }
}
