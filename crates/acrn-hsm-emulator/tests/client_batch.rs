//! The batch interface of the core's client (`IoreqClient::next_batch`), which the bindings use
//! for JavaScript devices: deferred devices answered by the caller, native ones served in the
//! same scan, exactly one NOTIFY per request, in both wake modes and completion modes; the
//! recorder and a device-model reset work on it as on `run()`.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acrn_hsm::Vm;
use acrn_hsm::client::{
    AddressSpace, Batch, ClientConfig, ClientHandle, DeferredAt, Dispatcher, IoDevice, IoreqClient,
    RunExit, VmAction, WakeMode,
};
use acrn_hsm::devices::RegisterFile;
use acrn_hsm::trace::{TraceRecorder, TraceSetup};
use common::*;

const DEFERRED_BASE: u64 = 0xfe00_0000;
const NATIVE_PORT: u16 = 0x510;

/// Per vCPU: `rounds` × [write the deferred register, read it back (the caller answers with the
/// value written), read the native constant port].
fn workload(vcpus: u16, rounds: u64) -> Workload {
    Workload {
        vcpus: (0..vcpus)
            .map(|v| {
                let reg = DEFERRED_BASE + 8 * u64::from(v);
                let val = 0x1000 + u64::from(v);
                vec![Op::Repeat {
                    count: rounds,
                    ops: vec![
                        Op::Mmio {
                            address: reg,
                            size: 8,
                            access: Access::Write(val),
                        },
                        Op::Mmio {
                            address: reg,
                            size: 8,
                            access: Access::Read { expect: Some(val) },
                        },
                        Op::Pio {
                            port: NATIVE_PORT,
                            size: 2,
                            access: Access::Read {
                                expect: Some(0xbeef),
                            },
                        },
                    ],
                }]
            })
            .collect(),
    }
}

/// Serves with `next_batch`, answering deferred reads from a register array the deferred writes
/// fill. Returns (deferred requests seen, batches).
fn serve(client: &mut IoreqClient) -> (u64, u64) {
    let mut regs = [0u64; 16];
    let mut responses = Vec::new();
    let (mut seen, mut batches) = (0u64, 0u64);
    loop {
        match client.next_batch(&responses).expect("next_batch") {
            Batch::Exit(x) => {
                assert_eq!(x, RunExit::Stopped);
                return (seen, batches);
            }
            Batch::Ready(n) => {
                assert_eq!(n, client.batch().len());
                assert!(n <= 16);
                batches += 1;
                responses.clear();
                for d in client.batch() {
                    seen += 1;
                    let i = (d.offset / 8) as usize;
                    if d.request.is_read {
                        responses.push(regs[i]);
                    } else {
                        regs[i] = d.request.value;
                        responses.push(0);
                    }
                }
            }
        }
    }
}

fn dispatcher() -> Dispatcher {
    let mut d = Dispatcher::new();
    d.add_deferred(
        DeferredAt::Range(AddressSpace::Mmio, DEFERRED_BASE, 0x100),
        "deferred-regs",
    )
    .expect("free");
    d.add_pio(
        NATIVE_PORT,
        2,
        Box::new(RegisterFile::with_contents(vec![0xef, 0xbe])),
    )
    .expect("free");
    d
}

fn run_case(vcpus: u16, polling: bool, mode: WakeMode) {
    let flags = if polling {
        GUEST_FLAG_IO_COMPLETION_POLLING
    } else {
        0
    };
    let (emu, _hsm, vm) = vm_with(vcpus, flags);
    let mut client = IoreqClient::new(
        vm.clone(),
        dispatcher(),
        ClientConfig {
            mode,
            ..Default::default()
        },
    )
    .expect("client");
    let handle = client.handle();
    let server = std::thread::spawn(move || serve(&mut client));
    vm.start().expect("start");
    let rounds = 300;
    let r = emu
        .guest(vm.vmid())
        .expect("guest")
        .run(&workload(vcpus, rounds))
        .expect("run");
    handle.stop();
    let (seen, batches) = server.join().expect("server");
    assert!(r.is_clean(), "{r:?}");
    let total = 3 * rounds * u64::from(vcpus);
    assert_eq!(r.issued, total);
    assert_eq!(r.completed, total);
    assert_eq!(
        seen,
        2 * rounds * u64::from(vcpus),
        "each deferred request once"
    );
    let s = handle.stats();
    assert_eq!(s.deferred, seen);
    assert_eq!(s.notifies, total, "exactly one NOTIFY per request");
    assert_eq!(s.pio_reads, rounds * u64::from(vcpus));
    assert_eq!(s.batches, batches);
}

#[test]
fn batches_serve_deferred_and_native_devices_exactly_once() {
    for polling in [false, true] {
        for mode in [WakeMode::Blocking, WakeMode::poll()] {
            run_case(4, polling, mode);
        }
    }
}

#[test]
fn run_refuses_a_dispatcher_with_deferred_devices() {
    let (_emu, _hsm, vm) = vm_with(1, 0);
    let mut client = IoreqClient::new(vm, dispatcher(), ClientConfig::default()).expect("client");
    let err = client
        .run()
        .expect_err("nobody would answer the deferred device");
    assert_eq!(err.errno, Errno::EINVAL);
}

#[test]
fn batches_are_recorded_and_a_reset_withholds_the_batch() {
    let (emu, _hsm, vm) = vm_with(1, 0);
    let d = dispatcher();
    let dir = std::env::temp_dir().join(format!("acrn-batch-{}.trace", std::process::id()));
    let setup = TraceSetup::new("batch", vm.vmid(), 1, false, d.trace_devices());
    let rec = TraceRecorder::create(&dir, &setup).expect("recorder");
    let mut client = IoreqClient::new(
        vm.clone(),
        d,
        ClientConfig {
            recorder: Some(rec.client()),
            ..Default::default()
        },
    )
    .expect("client");
    let control = client.control();
    vm.start().expect("start");
    let w = workload(1, 1);
    let run = emu
        .guest(vm.vmid())
        .expect("guest")
        .spawn(&w)
        .expect("spawn");
    // The deferred write: answer it, asking for a reset meanwhile (as a JS handler would).
    match client.next_batch(&[]).expect("first batch") {
        Batch::Ready(1) => assert!(!client.batch()[0].request.is_read),
        other => panic!("{other:?}"),
    }
    control.request(VmAction::Reset);
    // The reset withholds the batch's NOTIFY, clears the VM's requests and restarts it; the
    // guest run ends (its vCPU was reset) and nothing else arrives.
    let handle = client.handle();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        handle.stop();
    });
    assert_eq!(
        client.next_batch(&[0]).expect("after reset"),
        Batch::Exit(RunExit::Stopped)
    );
    stopper.join().expect("stopper");
    let r = run.join();
    let s = client.stats();
    assert_eq!(s.resets, 1);
    assert_eq!(s.withheld, 1);
    assert_eq!(s.notifies, 0);
    assert_eq!(
        r.completed, 0,
        "the reset request was not completed by a NOTIFY: {r:?}"
    );
    drop(client.set_recorder(None));
    drop(client);
    let summary = rec.finish().expect("finish");
    assert_eq!(summary.records, 1, "{summary:?}");
    let bytes = std::fs::read(&dir).expect("trace");
    let _ = std::fs::remove_file(&dir);
    let mut reader = acrn_trace::TraceReader::new(&bytes[..]).expect("decodes");
    let first = reader.next_record().expect("record").expect("one record");
    assert!(reader.next_record().expect("end").is_none());
    assert_eq!(first.outcome, acrn_trace::Outcome::Cleared);
    assert!(first.ts.handler_start >= first.ts.processing);
}

/// A native device at port 0x520 whose writes call `call` on the serving client's handle, as a
/// deferred virtio transport's hook does; its reads answer 0x5a.
struct HandleCaller {
    handle: Arc<Mutex<Option<ClientHandle>>>,
    call: fn(&ClientHandle),
}

impl IoDevice for HandleCaller {
    fn name(&self) -> &str {
        "handle-caller"
    }
    fn read(&mut self, _: u64, _: u8) -> u64 {
        0x5a
    }
    fn write(&mut self, _: u64, _: u8, _: u64) {
        if let Some(h) = self.handle.lock().unwrap().as_ref() {
            (self.call)(h);
        }
    }
}

const CALLER_PORT: u16 = 0x520;

/// A started 1-vCPU VM with [`HandleCaller`] at [`CALLER_PORT`] and its client in `mode`.
fn vm_with_caller(mode: WakeMode, call: fn(&ClientHandle)) -> (Emulator, Arc<Vm>, IoreqClient) {
    let (emu, _hsm, vm) = vm_with(1, 0);
    let handle = Arc::new(Mutex::new(None));
    let mut d = dispatcher();
    d.add_pio(
        CALLER_PORT,
        1,
        Box::new(HandleCaller {
            handle: handle.clone(),
            call,
        }),
    )
    .expect("free");
    let client = IoreqClient::new(
        vm.clone(),
        d,
        ClientConfig {
            mode,
            ..Default::default()
        },
    )
    .expect("client");
    *handle.lock().unwrap() = Some(client.handle());
    vm.start().expect("start");
    (emu, vm, client)
}

/// One access of vCPU 0 to [`CALLER_PORT`].
fn caller_op(access: Access) -> Op {
    Op::Pio {
        port: CALLER_PORT,
        size: 1,
        access,
    }
}

/// `next_batch` once `client` is stopped from another thread `after` from now.
fn next_batch_until_stopped(client: &mut IoreqClient, after: Duration) {
    let handle = client.handle();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(after);
        handle.stop();
    });
    assert_eq!(
        client.next_batch(&[]).expect("stopped"),
        Batch::Exit(RunExit::Stopped)
    );
    stopper.join().expect("stopper");
}

/// A native device that queued work for the server (as a deferred virtio transport does) wakes
/// the batch wait: `next_batch` returns an empty batch after the scan that served it.
#[test]
fn wake_batch_ends_the_wait_with_an_empty_batch() {
    let (emu, vm, mut client) = vm_with_caller(WakeMode::Blocking, ClientHandle::wake_batch);
    let w = Workload {
        vcpus: vec![vec![caller_op(Access::Write(1))]],
    };
    let run = emu
        .guest(vm.vmid())
        .expect("guest")
        .spawn(&w)
        .expect("spawn");
    assert_eq!(client.next_batch(&[]).expect("woken"), Batch::Ready(0));
    assert!(client.batch().is_empty());
    let r = run.join();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.completed, 1);
    next_batch_until_stopped(&mut client, Duration::from_millis(100));
}

/// `wake_batch_holding` (a virtio notify whose chains go to JavaScript): the request is answered
/// but its vCPU waits until the batch is handed back by the next `next_batch`, which NOTIFYs it
/// exactly once; a second request after it is then served as usual. In both wake modes.
#[test]
fn wake_batch_holding_completes_the_request_with_the_batch() {
    for mode in [WakeMode::Blocking, WakeMode::poll()] {
        let (emu, vm, mut client) = vm_with_caller(mode, ClientHandle::wake_batch_holding);
        let w = Workload {
            vcpus: vec![vec![
                caller_op(Access::Write(1)),
                caller_op(Access::Read { expect: Some(0x5a) }),
            ]],
        };
        let run = emu
            .guest(vm.vmid())
            .expect("guest")
            .spawn(&w)
            .expect("spawn");
        assert_eq!(client.next_batch(&[]).expect("woken"), Batch::Ready(0));
        // The write is held: its vCPU has not been notified, so the read was not issued.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            client.stats().notifies,
            0,
            "held until the batch comes back"
        );
        // Handing the (empty) batch back completes the write; the read is then served natively.
        next_batch_until_stopped(&mut client, Duration::from_millis(200));
        let r = run.join();
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(r.completed, 2);
        assert_eq!(client.stats().notifies, 2, "exactly one NOTIFY each");
    }
}

/// `complete(responses)` answers the batch on the caller's thread: the vCPU resumes (and its
/// read has the value) before any further `next_batch`, which then only waits; exactly one
/// NOTIFY per request. A power-off asked while the batch was handled ends serving at the next
/// `next_batch`.
#[test]
fn complete_answers_the_batch_before_the_next_wait() {
    let (emu, _hsm, vm) = vm_with(1, 0);
    let mut client =
        IoreqClient::new(vm.clone(), dispatcher(), ClientConfig::default()).expect("client");
    vm.start().expect("start");
    let w = Workload {
        vcpus: vec![vec![Op::Mmio {
            address: DEFERRED_BASE,
            size: 4,
            access: Access::Read { expect: Some(0x77) },
        }]],
    };
    let run = emu
        .guest(vm.vmid())
        .expect("guest")
        .spawn(&w)
        .expect("spawn");
    assert_eq!(client.next_batch(&[]).expect("batch"), Batch::Ready(1));
    client.complete(&[0x77]).expect("complete");
    // The guest ends without another next_batch.
    let r = run.join();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.completed, 1);
    assert_eq!(client.stats().notifies, 1);
    // A second complete has nothing left to answer.
    client.complete(&[0x99]).expect("nothing pending");
    assert_eq!(client.stats().notifies, 1);
    // A power-off requested during a batch: complete withholds, next_batch returns the exit.
    let run = emu
        .guest(vm.vmid())
        .expect("guest")
        .spawn(&w)
        .expect("spawn");
    assert_eq!(client.next_batch(&[]).expect("batch"), Batch::Ready(1));
    client.control().request(VmAction::PowerOff);
    client.complete(&[0x77]).expect("complete");
    assert_eq!(
        client.next_batch(&[]).expect("exit"),
        Batch::Exit(RunExit::PoweredOff)
    );
    drop(run);
}
