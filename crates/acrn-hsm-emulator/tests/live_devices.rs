//! Devices added and removed while the client serves ([`ClientHandle::bus`]): a guest polls a
//! port nobody serves (all ones) until a device added live answers it, then the device is
//! removed and the port reads all ones again; every request is completed exactly once. A
//! request handed to a deferred device that is removed meanwhile still completes once, with
//! the value its batch answered.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use acrn_hsm::client::{BarHandler, Batch, Bdf, BusError, DeferredAt, DeviceId};
use acrn_hsm::devices::{Bar, PciFunction};

const PORT: u16 = 0x510;
const POLLS: u64 = 20_000;

/// Answers 0x42 and counts its reads.
struct Answer(Arc<AtomicU64>);
impl IoDevice for Answer {
    fn name(&self) -> &str {
        "answer"
    }
    fn read(&mut self, _offset: u64, _size: u8) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed);
        0x42
    }
    fn write(&mut self, _offset: u64, _size: u8, _value: u64) {}
}

fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn add_poll_remove(mode: WakeMode) {
    let (_emu, hsm, vm) = vm_with(1, 0);
    let mut client = IoreqClient::new(
        vm.clone(),
        Dispatcher::new(),
        ClientConfig {
            mode,
            ..Default::default()
        },
    )
    .unwrap();
    let handle = client.handle();
    let t = std::thread::spawn(move || client.run().unwrap());
    vm.start().unwrap();
    let run = hsm
        .guest(&vm)
        .unwrap()
        .spawn(&Workload {
            vcpus: vec![vec![Op::Repeat {
                count: POLLS,
                // Paced, so a loaded machine still sees polls before, during and after.
                ops: vec![
                    Op::pio(PORT, 1, Access::expect(0x42)),
                    Op::Delay { ns: 20_000 },
                ],
            }]],
        })
        .unwrap();
    // The guest polls an unclaimed port...
    until("unclaimed polls", || handle.stats().unclaimed >= 200);
    // ...a device comes while the client serves...
    let reads = Arc::new(AtomicU64::new(0));
    let id = handle
        .bus()
        .add_pio(PORT, 1, Box::new(Answer(reads.clone())))
        .unwrap();
    // ...a second one at the same port is refused at once...
    assert!(matches!(
        handle
            .bus()
            .add_pio(PORT, 4, Box::new(Answer(reads.clone()))),
        Err(BusError::Overlap { .. })
    ));
    until("answered polls", || reads.load(Ordering::Relaxed) >= 200);
    // ...and goes away: the port is unclaimed again.
    handle.bus().remove(id).unwrap();
    assert_eq!(handle.bus().remove(id), Err(BusError::NoSuchDevice(id)));
    let after = handle.stats().unclaimed;
    let r = run.join();
    handle.stop();
    let exit = t.join().unwrap();
    assert_eq!(exit, RunExit::Stopped);
    assert!(
        handle.stats().unclaimed > after,
        "the guest polled the removed port"
    );

    // Every poll completed once: the served ones form one run between the two unclaimed ones.
    assert_eq!((r.issued, r.completed), (POLLS, POLLS), "{mode:?}");
    assert!(r.faults.is_empty(), "{:?}", r.faults);
    let served = reads.load(Ordering::Relaxed);
    assert_eq!(r.mismatches.len() as u64, POLLS - served);
    assert!(r.mismatches.iter().all(|m| m.actual == 0xff));
    let seq: Vec<u64> = r.mismatches.iter().map(|m| m.request).collect();
    let first_served = seq
        .windows(2)
        .find(|w| w[1] != w[0] + 1)
        .map(|w| w[0] + 1)
        .unwrap();
    let last_served = first_served + served - 1;
    assert!(
        seq.iter().all(|&n| n < first_served || n > last_served),
        "served requests are contiguous"
    );
    let s = handle.stats();
    assert_eq!(s.pio_reads, served);
    assert_eq!(s.unclaimed, POLLS - served);
    assert_eq!((s.handled(), s.notifies), (POLLS, POLLS));
    let counters = handle.device_counters();
    assert_eq!(counters[id.0].reads(), served, "counters published live");
    vm.pause().unwrap();
}

#[test]
fn a_device_added_while_serving_answers_the_polling_guest_and_removed_it_is_unclaimed() {
    add_poll_remove(WakeMode::poll());
}

#[test]
fn the_same_in_blocking_mode() {
    add_poll_remove(WakeMode::Blocking);
}

#[test]
fn a_request_in_flight_to_a_removed_deferred_device_completes_once() {
    let (_emu, hsm, vm) = vm_with(1, 0);
    let mut d = Dispatcher::new();
    let id = d
        .add_deferred(
            DeferredAt::Range(acrn_hsm::client::AddressSpace::Pio, 0x520, 4),
            "js",
        )
        .unwrap();
    let mut client = IoreqClient::new(vm.clone(), d, ClientConfig::default()).unwrap();
    let handle = client.handle();
    let (handed, handed_rx) = std::sync::mpsc::channel();
    let (removed, removed_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        assert_eq!(client.next_batch(&[]).unwrap(), Batch::Ready(1));
        handed.send(client.batch()[0].device).unwrap();
        removed_rx.recv().unwrap();
        // The batch is answered after its device went: the guest still gets this value.
        let exit = client.next_batch(&[0x77]).unwrap();
        (exit, client.stats())
    });
    vm.start().unwrap();
    let run = hsm
        .guest(&vm)
        .unwrap()
        .spawn(&Workload {
            vcpus: vec![vec![
                Op::pio(0x520, 1, Access::expect(0x77)),
                Op::pio(0x520, 1, Access::expect(0xff)),
            ]],
        })
        .unwrap();
    let dev: DeviceId = handed_rx.recv().unwrap();
    assert_eq!(dev, id);
    handle.bus().remove(id).unwrap();
    removed.send(()).unwrap();
    let r = run.join();
    assert!(r.is_clean(), "{r:?}");
    handle.stop();
    let (exit, s) = t.join().unwrap();
    assert_eq!(exit, Batch::Exit(RunExit::Stopped));
    assert_eq!((s.deferred, s.unclaimed, s.notifies), (1, 1, 2));
    vm.pause().unwrap();
}

#[test]
fn live_changes_are_checked_at_once() {
    let (_emu, _hsm, vm) = vm_with(1, 0);
    let mut d = Dispatcher::new();
    let f = PciFunction::new(0x8086, 0x1234)
        .with_bar(0, Bar::Io { size: 0x10 })
        .unwrap();
    let (fid, bars) = d
        .add_pci_with_bars(
            Bdf::new(0, 3, 0),
            Box::new(f),
            vec![(0, BarHandler::Native(Box::new(Answer(Arc::default()))))],
        )
        .unwrap();
    let mut client = IoreqClient::new(
        vm.clone(),
        d,
        ClientConfig {
            mode: WakeMode::poll(),
            ..Default::default()
        },
    )
    .unwrap();
    let handle = client.handle();
    let t = std::thread::spawn(move || {
        let _ = client.run();
        client
    });
    until("running", || handle.is_running());
    let bus = handle.bus();
    assert!(matches!(
        bus.add_pio(0xcf8, 8, Box::new(Answer(Arc::default()))),
        Err(BusError::Reserved { .. })
    ));
    assert!(matches!(
        bus.add_deferred(DeferredAt::Pci(Bdf::new(0, 4, 0)), "js"),
        Err(BusError::DeferredUnserved { .. })
    ));
    assert!(matches!(
        bus.add_pci(Bdf::new(0, 3, 0), Box::new(PciFunction::new(1, 2))),
        Err(BusError::PciTaken { .. })
    ));
    assert!(matches!(
        bus.remove(bars[0]),
        Err(BusError::NotRemovable { .. })
    ));
    // Removing the function takes its BAR handler; its address is free again at once.
    bus.remove(fid).unwrap();
    assert_eq!(bus.remove(bars[0]), Err(BusError::NoSuchDevice(bars[0])));
    let again = bus
        .add_pci(Bdf::new(0, 3, 0), Box::new(PciFunction::new(1, 2)))
        .unwrap();
    until("applied", || !bus.pending());
    handle.stop();
    let mut client = t.join().unwrap();
    let ranges = client.dispatcher_mut().ranges();
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0].id, again);
}

#[test]
fn a_recording_stays_valid_when_a_device_is_added_after_its_header() {
    use acrn_hsm::trace::{TraceRecorder, TraceSetup};
    let (_emu, hsm, vm) = vm_with(1, 0);
    let mut d = Dispatcher::new();
    d.add_pio(0x600, 1, Box::new(Answer(Arc::default())))
        .unwrap();
    let path = std::env::temp_dir().join(format!("acrn-live-{}.trace", std::process::id()));
    let setup = TraceSetup::new("live", vm.vmid(), 1, false, d.trace_devices());
    let rec = TraceRecorder::create(&path, &setup).unwrap();
    let mut client = IoreqClient::new(
        vm.clone(),
        d,
        ClientConfig {
            mode: WakeMode::poll(),
            recorder: Some(rec.client()),
            ..Default::default()
        },
    )
    .unwrap();
    let handle = client.handle();
    let t = std::thread::spawn(move || {
        client.run().unwrap();
        drop(client);
    });
    vm.start().unwrap();
    // Not in the header's device table: its records carry no device, and the trace is valid.
    handle
        .bus()
        .add_pio(PORT, 1, Box::new(Answer(Arc::default())))
        .unwrap();
    let r = hsm
        .guest(&vm)
        .unwrap()
        .run(&Workload {
            vcpus: vec![vec![
                Op::pio(0x600, 1, Access::expect(0x42)),
                Op::pio(PORT, 1, Access::expect(0x42)),
            ]],
        })
        .unwrap();
    assert!(r.is_clean(), "{r:?}");
    handle.stop();
    t.join().unwrap();
    let summary = rec.finish().unwrap();
    assert_eq!(summary.records, 2);
    let _ = std::fs::remove_file(&path);
    vm.pause().unwrap();
}
