//! SeaBIOS (Debian's `bios.bin`, real firmware nobody here wrote) on the KVM engine: it must
//! enumerate the PCI bus, read CMOS, and print its banner and boot attempts on COM1, every
//! access an ACRN I/O request served by the platform devices. Skipped where `/dev/kvm` is
//! unusable or the `seabios` package is missing.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use acrn_hsm_tools::run::{Console, Payload, RunConfig, RunEnd, SEABIOS_PATH, run_guest};

fn skip(test: &str) -> bool {
    match acrn_hsm_tools::run::seabios_unavailable() {
        Some(why) => {
            println!("SKIP {test}: {why}");
            true
        }
        None => false,
    }
}

fn seabios(polling: bool) {
    let trace =
        std::env::temp_dir().join(format!("seabios-{}-{polling}.trace", std::process::id()));
    let r = run_guest(&RunConfig {
        payload: Payload::Firmware(SEABIOS_PATH.into()),
        polling,
        console: Console::Capture,
        timeout: Some(Duration::from_secs(120)),
        until_serial: Some("No bootable device".into()),
        trace: Some(trace.clone()),
        ..Default::default()
    })
    .unwrap();
    let text = String::from_utf8_lossy(&r.serial).to_string();
    println!(
        "serial: {text}\ndebugcon: {}\n{:?} {:?} {:?} in {:?}",
        String::from_utf8_lossy(&r.debugcon),
        r.end,
        r.kvm,
        r.client,
        r.elapsed
    );
    assert_eq!(r.end, RunEnd::SerialMatch, "{text}");
    assert!(text.contains("SeaBIOS (version"), "banner: {text}");
    assert!(
        r.client.pci_reads > 0,
        "PCI config reads reached the client"
    );
    assert!(
        text.contains("Booting from Hard Disk"),
        "boot attempts: {text}"
    );
    // Every exit issued once or answered by the hypervisor itself (vPCI: no request), but one
    // that met the VM already paused at the end; every issued request completed once (but the
    // one in flight at the end).
    assert!(
        r.kvm.exits - r.kvm.issued - r.kvm.hv_handled <= 1,
        "{:?}",
        r.kvm
    );
    assert!(r.kvm.issued - r.kvm.completed <= 1, "{:?}", r.kvm);
    assert_eq!(r.kvm.faults, 0);
    assert_eq!(
        r.trace.as_ref().map(|t| t.records),
        Some(r.kvm.issued),
        "one trace record per request"
    );
    let _ = std::fs::remove_file(trace);
}

#[test]
fn seabios_banner_notify() {
    if !skip("seabios_banner_notify") {
        seabios(false);
    }
}

#[test]
fn seabios_banner_polling() {
    if !skip("seabios_banner_polling") {
        seabios(true);
    }
}

/// Two vCPUs: SeaBIOS wakes the AP through the in-kernel LAPIC (INIT-SIPI) and counts it.
#[test]
fn seabios_finds_two_cpus() {
    if skip("seabios_finds_two_cpus") {
        return;
    }
    let r = run_guest(&RunConfig {
        payload: Payload::Firmware(SEABIOS_PATH.into()),
        vcpus: 2,
        console: Console::Capture,
        timeout: Some(Duration::from_secs(120)),
        until_serial: Some("No bootable device".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(r.end, RunEnd::SerialMatch);
    let log = String::from_utf8_lossy(&r.debugcon).to_string();
    assert!(log.contains("Found 2 cpu(s)"), "debugcon: {log}");
}
