//! Stress with exactly-once accounting: 16 vCPUs over the native devices (the demo's VM), in both
//! wake modes (blocking ATTACH, busy-poll) and both completion modes (notification VM, polling
//! VM). Every request must be completed once with the expected value:
//!
//! * guest side: issued == completed, no mismatch, no fault (each read carries its expectation);
//! * client side: NOTIFYs == requests handled, no fault;
//! * device side: every access counted once — the devices' counts plus the unclaimed ones equal
//!   the client's, and the client's plus the 0xCF8 writes (one per PCI access, completed in the
//!   kernel) equal the guest's; the sequencer saw every number once, in order.
//!
//! `ACRN_HSM_STRESS_REQUESTS` sets the requests per vCPU (default 8000: 16 x 8000 per combination, a few seconds in all);
//! e.g. `ACRN_HSM_STRESS_REQUESTS=65536 cargo test --release -p acrn-hsm --test client_stress`
//! runs over a million requests per combination.

use std::time::Duration;

use acrn_hsm::client::{PollConfig, WakeMode};
use acrn_hsm_tools::demo::{DemoConfig, DemoMode, DemoSummary, run};

fn requests() -> u64 {
    std::env::var("ACRN_HSM_STRESS_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8000)
}

fn stress(mode: DemoMode, wake: WakeMode) -> DemoSummary {
    let n = requests();
    let s = run(
        DemoConfig {
            vcpus: 16,
            requests_per_vcpu: n,
            mode,
            wake: Some(wake),
            seed: 0x5eed ^ n,
            round_requests: n.min(50_000),
            progress_interval: Duration::from_secs(3600),
            ..Default::default()
        },
        |_| {},
    )
    .expect("demo");
    let label = format!("{mode} / {wake:?}");
    assert!(s.is_clean(), "{label}: {s:#?}");
    assert!(s.issued >= 16 * n, "{label}: issued {}", s.issued);
    assert_eq!(s.completed, s.issued, "{label}");
    let c = s.client;
    assert_eq!(c.notifies, c.handled(), "{label}: one NOTIFY per request");
    assert_eq!(c.notify_errors, 0);
    assert_eq!(c.faults, 0);
    let device_total: u64 = s.devices.iter().map(|d| d.reads + d.writes).sum();
    assert_eq!(
        device_total + c.unclaimed,
        c.handled(),
        "{label}: device side"
    );
    let pci = s
        .devices
        .iter()
        .find(|d| d.name.starts_with("pci"))
        .expect("pci device");
    assert_eq!(
        c.handled() + pci.reads + pci.writes,
        s.issued,
        "{label}: every guest request reached the client once (cf8 aside)"
    );
    eprintln!(
        "{label}: {} requests in {} ms ({:.0}/s), p50 {} ns, p99 {} ns, max batch {}",
        s.completed, s.elapsed_ms, s.rate, s.latency_ns.p50, s.latency_ns.p99, c.max_batch
    );
    s
}

#[test]
fn notify_vm_blocking_client() {
    stress(DemoMode::Notify, WakeMode::Blocking);
}

#[test]
fn notify_vm_polling_client() {
    stress(DemoMode::Notify, WakeMode::Poll(PollConfig::default()));
}

#[test]
fn polling_vm_blocking_client() {
    stress(DemoMode::Poll, WakeMode::Blocking);
}

#[test]
fn polling_vm_polling_client() {
    stress(DemoMode::Poll, WakeMode::Poll(PollConfig::default()));
}
