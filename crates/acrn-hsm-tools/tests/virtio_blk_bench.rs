//! Smoke test of the virtio-blk benchmark's guest (`acrn-hsm bench --virtio`): tiny sizes, one
//! run per variant: the KVM engine's native virtio-blk in both completion modes and, where
//! `qemu-system-x86_64` is installed, QEMU/KVM's virtio-blk-pci on the same image. Skipped
//! where `/dev/kvm` is unusable or `seabios` is missing.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use acrn_hsm_tools::virtio_blk_bench::{self as vb, BlkSizes};

fn skip(test: &str) -> bool {
    match acrn_hsm_tools::run::seabios_unavailable() {
        Some(why) => {
            println!("SKIP {test}: {why}");
            true
        }
        None => false,
    }
}

const SIZES: BlkSizes = BlkSizes {
    warmup: 2,
    big_reads: 16,
    big_sectors: 64,
    small_reads: 16,
    small_sectors: 8,
    lba0: 2048,
    lba_end: 4096,
};

fn check(what: &str, d: &vb::BlkDeltas) {
    println!(
        "{what}: big {:?}\n  small {:?}",
        &d.big[..4.min(d.big.len())],
        &d.small[..4.min(d.small.len())]
    );
    assert_eq!(d.warmup.len(), 2);
    assert_eq!(d.big.len(), 16);
    assert_eq!(d.small.len(), 16);
    assert!(d.big.iter().chain(&d.small).all(|&c| c > 0), "{d:?}");
}

#[test]
fn virtio_blk_bench_guest_runs_native_and_qemu() {
    if skip("virtio_blk_bench_guest_runs_native_and_qemu") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("vblk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("disk.img");
    vb::write_disk_image(&img, &SIZES).unwrap();
    use vb::NotifyPath::{Ioeventfd, Ioreq, KvmIoeventfd};
    // The exits of the HSM-ioeventfd run of each mode, for the KVM_IOEVENTFD run after it.
    let mut hsm_exits = [0u64; 2];
    for notify in [Ioreq, Ioeventfd, KvmIoeventfd] {
        for polling in [false, true] {
            let r =
                vb::run_native(&img, &SIZES, polling, notify, Duration::from_secs(120)).unwrap();
            let what = format!(
                "native {} {notify:?}",
                if polling { "poll" } else { "notify" },
            );
            check(&what, &r.deltas);
            assert!(r.chains >= 35, "boot sector + 34 reads: {}", r.chains);
            match notify {
                Ioeventfd => hsm_exits[usize::from(polling)] = r.exits,
                // KVM matched the notify writes itself: they are no exits (one per read fewer;
                // half of that leaves room for the firmware's timing-dependent exits).
                KvmIoeventfd => assert!(
                    r.exits + r.notifies / 2 <= hsm_exits[usize::from(polling)],
                    "{what}: {} exits, {} with the HSM's ioeventfd client, {} notifies",
                    r.exits,
                    hsm_exits[usize::from(polling)],
                    r.notifies
                ),
                Ioreq => {}
            }
            if notify != Ioreq {
                // Every read's notification went through the eventfd, none as a request.
                assert!(r.ioeventfd_wakeups >= 34, "{what}: {r:?}");
            } else {
                assert_eq!(r.ioeventfd_wakeups, 0);
            }
            println!(
                "  {:?}, {} exits, {} notifies, {} ioeventfd wake-ups",
                r.elapsed, r.exits, r.notifies, r.ioeventfd_wakeups
            );
        }
    }
    let have_qemu = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if have_qemu {
        let dump = dir.join("qemu.dcon");
        let st = std::process::Command::new("qemu-system-x86_64")
            .args(vb::qemu_args(&img, &dump))
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(33), "QEMU's exit: the guest's debug exit");
        let d = vb::parse_dump(&std::fs::read(&dump).unwrap(), &SIZES).unwrap();
        check("qemu", &d);
    } else {
        println!("qemu-system-x86_64 missing: the QEMU variant not run");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
