//! Smoke tests of the real-guest PIO benchmark's guest (`acrn-hsm bench --guest`): a few
//! iterations on the KVM engine in both completion modes, and under QEMU/KVM when Debian's
//! `qemu-system-x86_64` is installed. Skipped (with a printed reason) where KVM is unusable.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use acrn_hsm_emulator::kvm;
use acrn_hsm_tools::guest_pio::{self, GuestWait, parse_dump};

fn kvm_or_skip(test: &str) -> bool {
    let p = kvm::probe();
    if !p.usable {
        println!("SKIP {test}: KVM engine unusable here: {}", p.reason);
    }
    p.usable
}

fn check(dump: &[u8], n: u16) {
    let d = parse_dump(dump, n).unwrap_or_else(|| panic!("dump of {} bytes", dump.len()));
    assert_eq!(d.pio.len(), usize::from(n));
    // Two exits per measured iteration cost more than the empty iteration.
    let med = |v: &[u32]| {
        let mut s = v.to_vec();
        s.sort_unstable();
        s[s.len() / 2]
    };
    assert!(med(&d.pio) > med(&d.empty), "{d:?}");
}

#[test]
fn native_device_both_modes() {
    if !kvm_or_skip("native_device_both_modes") {
        return;
    }
    for wait in [GuestWait::Notify, GuestWait::Poll, GuestWait::PollSpin] {
        let r = guest_pio::run_native(20, 5, wait, Duration::from_secs(60)).unwrap();
        // warm-up out+in, measured out+in.
        assert_eq!(r.served, 2 * 5 + 2 * 20, "{wait:?}");
        check(&r.dump, 20);
    }
}

#[test]
fn qemu_answers_the_port() {
    if !kvm_or_skip("qemu_answers_the_port") {
        return;
    }
    let qemu = "/usr/bin/qemu-system-x86_64";
    if !std::path::Path::new(qemu).exists() {
        println!("SKIP qemu_answers_the_port: {qemu} missing (apt-get install qemu-system-x86)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("acrn-hsm-guest-pio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("guest.bin");
    let out = dir.join("dump.bin");
    std::fs::write(&img, guest_pio::bios_image(&guest_pio::guest_code(20, 5))).unwrap();
    let st = std::process::Command::new(qemu)
        .args(guest_pio::qemu_args(&img, &out))
        .status()
        .unwrap();
    assert_eq!(
        st.code(),
        Some(33),
        "QEMU's exit status (isa-debug-exit 0x10)"
    );
    check(&std::fs::read(&out).unwrap(), 20);
    let _ = std::fs::remove_dir_all(&dir);
}
