//! SeaBIOS (Debian's `bios.bin`, unchanged) boots from the project's virtio-blk disk: it finds
//! the modern virtio-pci function at 00:03.0 on the PCI bus, reads the boot sector through the
//! virtqueue and jumps to it. The boot sector (hand-assembled below) reads sectors 1-2 with
//! int 13h AH=02h and sector 3 with AH=42h (extended read) through the BIOS, prints the
//! NUL-terminated text of each on COM1 and writes 0x10 to isa-debug-exit (status 33). Both
//! ioreq completion modes, and each way the queue notifications can arrive (KVM_IOEVENTFD, the
//! HSM's ioeventfd client, an ioreq). Skipped where `/dev/kvm` is unusable or `seabios` is missing.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use acrn_hsm_tools::boot_disk;
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

const MARKERS: [&str; 3] = boot_disk::SECTOR_TEXTS;

fn disk_image(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("seabios-virtio-{}-{tag}.img", std::process::id()));
    std::fs::write(&p, boot_disk::image()).unwrap();
    p
}

/// How the disk's queue notifications arrive: `Kvm` (IOEVENTFD matched by KVM, the default),
/// `Hsm` (IOEVENTFD through the HSM's in-kernel client), `Ioreq` (a request to the ioreq client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notify {
    Kvm,
    Hsm,
    Ioreq,
}

fn boot_virtio(polling: bool) {
    boot_virtio_via(polling, Notify::Kvm);
}

fn boot_virtio_via(polling: bool, via: Notify) {
    let disk = disk_image(&format!(
        "{}-{via:?}",
        if polling { "poll" } else { "notify" }
    ));
    let r = run_guest(&RunConfig {
        payload: Payload::Firmware(SEABIOS_PATH.into()),
        polling,
        console: Console::Capture,
        timeout: Some(Duration::from_secs(300)),
        disk: Some(disk.clone()),
        disk_ioeventfd: via != Notify::Ioreq,
        kvm_ioeventfd: via == Notify::Kvm,
        ..Default::default()
    })
    .unwrap();
    let text = String::from_utf8_lossy(&r.serial).to_string();
    let log = String::from_utf8_lossy(&r.debugcon).to_string();
    println!(
        "serial: {text}\ndebugcon: {log}\n{:?} {:?} {:?} {:?} in {:?}",
        r.end, r.kvm, r.client, r.virtio_blk, r.elapsed
    );
    let _ = std::fs::remove_file(&disk);
    assert_eq!(r.end, RunEnd::DebugExit(0x10), "{text}\n{log}");
    assert_eq!(r.status, 33);
    assert!(
        log.contains("found virtio-blk at 00:03.0"),
        "SeaBIOS found the disk: {log}"
    );
    assert!(text.contains("Booting from Hard Disk"), "{text}");
    // SeaBIOS's serial console buffers its own output (flushed on timer ticks), so the end of
    // "Booting from Hard Disk...\r\n" can land among the boot sector's bytes: compare
    // without dots and line ends.
    let plain: String = text
        .chars()
        .filter(|c| !matches!(c, '.' | '\r' | '\n'))
        .collect();
    assert!(
        plain.contains(&MARKERS.concat()),
        "the three sectors, in order: {text:?}"
    );
    let stats = r.virtio_blk.unwrap();
    assert!(
        stats.chains >= 3,
        "boot sector + two int 13h reads: {stats:?}"
    );
    assert_eq!(stats.needs_reset, 0);
    assert_eq!(r.kvm.faults, 0);
    // SeaBIOS makes one request per notification and waits for it: each notification served
    // exactly one chain, whichever way it came.
    assert_eq!(stats.chains, stats.notifies, "{stats:?}");
    match r.virtio_blk_notifier {
        // Every notification came through an eventfd (SeaBIOS sets DRIVER_OK first).
        Some(n) => {
            assert_ne!(via, Notify::Ioreq);
            assert_eq!(n.wakeups, stats.notifies, "{n:?} {stats:?}");
            assert_eq!(n.registrations, 1, "{n:?}");
            assert_eq!(n.errors, 0, "{n:?}");
        }
        None => assert_eq!(via, Notify::Ioreq),
    }
}

#[test]
fn seabios_boots_virtio_blk_through_the_hsm_ioeventfd_notify() {
    if !skip("seabios_boots_virtio_blk_through_the_hsm_ioeventfd_notify") {
        boot_virtio_via(false, Notify::Hsm);
    }
}

#[test]
fn seabios_boots_virtio_blk_through_the_hsm_ioeventfd_polling() {
    if !skip("seabios_boots_virtio_blk_through_the_hsm_ioeventfd_polling") {
        boot_virtio_via(true, Notify::Hsm);
    }
}

#[test]
fn seabios_boots_virtio_blk_through_ioreq_notify() {
    if !skip("seabios_boots_virtio_blk_through_ioreq_notify") {
        boot_virtio_via(false, Notify::Ioreq);
    }
}

#[test]
fn seabios_boots_virtio_blk_through_ioreq_polling() {
    if !skip("seabios_boots_virtio_blk_through_ioreq_polling") {
        boot_virtio_via(true, Notify::Ioreq);
    }
}

#[test]
fn seabios_boots_virtio_blk_notify() {
    if !skip("seabios_boots_virtio_blk_notify") {
        boot_virtio(false);
    }
}

#[test]
fn seabios_boots_virtio_blk_polling() {
    if !skip("seabios_boots_virtio_blk_polling") {
        boot_virtio(true);
    }
}

/// A boot sector that is a virtio driver: it drives the virtio-rng function at 00:04.0 through
/// the PCI configuration access capability (at 0x84 of its configuration space: `bar`, `offset`,
/// `length`, `pci_cfg_data`), so with port I/O only from real mode; sets up queue 0 (4 entries
/// at 0x6000/0x6100/0x6200) with one 16-byte device-writable buffer at 0x6400, installs an
/// interrupt handler for the INTx line SeaBIOS assigned (IRQ 8..15, slave PIC), unmasks it,
/// notifies and halts until the interrupt. The handler reads the ISR (which lowers the line)
/// and sends EOIs. It then checks the used element (id 0, len 16), the ISR value (1: queue) and
/// that the buffer is not all zeroes, prints a line on COM1 and writes 0x10 to isa-debug-exit
/// (any failed check: 0x12). Source: `tests/data/virtio_rng_irq.s` (GNU as), listing below.
#[rustfmt::skip]
const RNG_IRQ_CODE: &[u8] = &[
    0xfa,                                   // 000 cli
    0x31, 0xc0,                             // 001 xor %ax,%ax
    0x8e, 0xd8,                             // 003 mov %ax,%ds
    0x8e, 0xc0,                             // 005 mov %ax,%es
    0x8e, 0xd0,                             // 007 mov %ax,%ss
    0xbc, 0x00, 0x7c,                       // 009 mov $0x7c00,%sp
    0xfc,                                   // 00c cld
    0xbf, 0x00, 0x60,                       // 00d mov $0x6000,%di
    0xb9, 0x80, 0x02,                       // 010 mov $0x280,%cx
    0xf3, 0xab,                             // 013 rep stos %ax,%es:(%di)
    0xc7, 0x06, 0x00, 0x60, 0x00, 0x64,     // 015 movw $0x6400,0x6000
    0xc7, 0x06, 0x08, 0x60, 0x10, 0x00,     // 01b movw $0x10,0x6008
    0xc7, 0x06, 0x0c, 0x60, 0x02, 0x00,     // 021 movw $0x2,0x600c
    0x66, 0xb8, 0x3c, 0x20, 0x00, 0x80,     // 027 mov $0x8000203c,%eax
    0xe8, 0x2f, 0x01,                       // 02d call 0x15f
    0xba, 0xfc, 0x0c,                       // 030 mov $0xcfc,%dx
    0xec,                                   // 033 in (%dx),%al
    0x2c, 0x08,                             // 034 sub $0x8,%al
    0x0f, 0x82, 0xfd, 0x00,                 // 036 jb 0x137
    0x3c, 0x08,                             // 03a cmp $0x8,%al
    0x0f, 0x83, 0xf7, 0x00,                 // 03c jae 0x137
    0x88, 0xc1,                             // 040 mov %al,%cl
    0x0f, 0xb6, 0xd8,                       // 042 movzbw %al,%bx
    0x83, 0xc3, 0x70,                       // 045 add $0x70,%bx
    0xc1, 0xe3, 0x02,                       // 048 shl $0x2,%bx
    0xc7, 0x07, 0x3d, 0x7d,                 // 04b movw $0x7d3d,(%bx)
    0xc7, 0x47, 0x02, 0x00, 0x00,           // 04f movw $0x0,0x2(%bx)
    0xb3, 0x01,                             // 054 mov $0x1,%bl
    0xd2, 0xe3,                             // 056 shl %cl,%bl
    0xf6, 0xd3,                             // 058 not %bl
    0xe4, 0xa1,                             // 05a in $0xa1,%al
    0x20, 0xd8,                             // 05c and %bl,%al
    0xe6, 0xa1,                             // 05e out %al,$0xa1
    0xe4, 0x21,                             // 060 in $0x21,%al
    0x24, 0xfb,                             // 062 and $0xfb,%al
    0xe6, 0x21,                             // 064 out %al,$0x21
    0x66, 0x31, 0xc0,                       // 066 xor %eax,%eax
    0x66, 0xbb, 0x14, 0x00, 0x00, 0x00,     // 069 mov $0x14,%ebx
    0x66, 0xb9, 0x01, 0x00, 0x00, 0x00,     // 06f mov $0x1,%ecx
    0xe8, 0x34, 0x01,                       // 075 call 0x1ac
    0xb0, 0x03,                             // 078 mov $0x3,%al
    0xe8, 0x2f, 0x01,                       // 07a call 0x1ac
    0xb1, 0x04,                             // 07d mov $0x4,%cl
    0xb3, 0x08,                             // 07f mov $0x8,%bl
    0xb0, 0x01,                             // 081 mov $0x1,%al
    0xe8, 0x26, 0x01,                       // 083 call 0x1ac
    0xb3, 0x0c,                             // 086 mov $0xc,%bl
    0xe8, 0x21, 0x01,                       // 088 call 0x1ac
    0xb1, 0x01,                             // 08b mov $0x1,%cl
    0xb3, 0x14,                             // 08d mov $0x14,%bl
    0xb0, 0x0b,                             // 08f mov $0xb,%al
    0xe8, 0x18, 0x01,                       // 091 call 0x1ac
    0xe8, 0x1b, 0x01,                       // 094 call 0x1b2
    0xa8, 0x08,                             // 097 test $0x8,%al
    0x0f, 0x84, 0x9a, 0x00,                 // 099 je 0x137
    0xb1, 0x02,                             // 09d mov $0x2,%cl
    0xb3, 0x16,                             // 09f mov $0x16,%bl
    0x66, 0x31, 0xc0,                       // 0a1 xor %eax,%eax
    0xe8, 0x05, 0x01,                       // 0a4 call 0x1ac
    0xb3, 0x18,                             // 0a7 mov $0x18,%bl
    0xb0, 0x04,                             // 0a9 mov $0x4,%al
    0xe8, 0xfe, 0x00,                       // 0ab call 0x1ac
    0xb1, 0x04,                             // 0ae mov $0x4,%cl
    0xb3, 0x20,                             // 0b0 mov $0x20,%bl
    0xb8, 0x00, 0x60,                       // 0b2 mov $0x6000,%ax
    0xe8, 0xf4, 0x00,                       // 0b5 call 0x1ac
    0xb3, 0x28,                             // 0b8 mov $0x28,%bl
    0xb8, 0x00, 0x61,                       // 0ba mov $0x6100,%ax
    0xe8, 0xec, 0x00,                       // 0bd call 0x1ac
    0xb3, 0x30,                             // 0c0 mov $0x30,%bl
    0xb8, 0x00, 0x62,                       // 0c2 mov $0x6200,%ax
    0xe8, 0xe4, 0x00,                       // 0c5 call 0x1ac
    0xb1, 0x02,                             // 0c8 mov $0x2,%cl
    0xb3, 0x1c,                             // 0ca mov $0x1c,%bl
    0xb8, 0x01, 0x00,                       // 0cc mov $0x1,%ax
    0xe8, 0xda, 0x00,                       // 0cf call 0x1ac
    0xb1, 0x01,                             // 0d2 mov $0x1,%cl
    0xb3, 0x14,                             // 0d4 mov $0x14,%bl
    0xb0, 0x0f,                             // 0d6 mov $0xf,%al
    0xe8, 0xd1, 0x00,                       // 0d8 call 0x1ac
    0xc7, 0x06, 0x02, 0x61, 0x01, 0x00,     // 0db movw $0x1,0x6102
    0xb1, 0x02,                             // 0e1 mov $0x2,%cl
    0xbb, 0x00, 0x30,                       // 0e3 mov $0x3000,%bx
    0x66, 0x31, 0xc0,                       // 0e6 xor %eax,%eax
    0xe8, 0xc0, 0x00,                       // 0e9 call 0x1ac
    0xfa,                                   // 0ec cli
    0x80, 0x3e, 0xb8, 0x7d, 0x00,           // 0ed cmpb $0x0,0x7db8
    0x75, 0x04,                             // 0f2 jne 0xf8
    0xfb,                                   // 0f4 sti
    0xf4,                                   // 0f5 hlt
    0xeb, 0xf4,                             // 0f6 jmp 0xec
    0x83, 0x3e, 0x02, 0x62, 0x01,           // 0f8 cmpw $0x1,0x6202
    0x75, 0x38,                             // 0fd jne 0x137
    0x83, 0x3e, 0x08, 0x62, 0x10,           // 0ff cmpw $0x10,0x6208
    0x75, 0x31,                             // 104 jne 0x137
    0x80, 0x3e, 0xb9, 0x7d, 0x01,           // 106 cmpb $0x1,0x7db9
    0x75, 0x2a,                             // 10b jne 0x137
    0x66, 0xa1, 0x00, 0x64,                 // 10d mov 0x6400,%eax
    0x66, 0x0b, 0x06, 0x04, 0x64,           // 111 or 0x6404,%eax
    0x66, 0x0b, 0x06, 0x08, 0x64,           // 116 or 0x6408,%eax
    0x66, 0x0b, 0x06, 0x0c, 0x64,           // 11b or 0x640c,%eax
    0x74, 0x15,                             // 120 je 0x137
    0xbe, 0xba, 0x7d,                       // 122 mov $0x7dba,%si
    0xba, 0xf8, 0x03,                       // 125 mov $0x3f8,%dx
    0xac,                                   // 128 lods %ds:(%si),%al
    0x84, 0xc0,                             // 129 test %al,%al
    0x74, 0x03,                             // 12b je 0x130
    0xee,                                   // 12d out %al,(%dx)
    0xeb, 0xf8,                             // 12e jmp 0x128
    0xb0, 0x10,                             // 130 mov $0x10,%al
    0xe6, 0xf4,                             // 132 out %al,$0xf4
    0xf4,                                   // 134 hlt
    0xeb, 0xfd,                             // 135 jmp 0x134
    0xb0, 0x12,                             // 137 mov $0x12,%al
    0xe6, 0xf4,                             // 139 out %al,$0xf4
    0xeb, 0xf7,                             // 13b jmp 0x134
    0x66, 0x60,                             // 13d pushal
    0x66, 0xbb, 0x00, 0x10, 0x00, 0x00,     // 13f mov $0x1000,%ebx
    0x66, 0xb9, 0x01, 0x00, 0x00, 0x00,     // 145 mov $0x1,%ecx
    0xe8, 0x64, 0x00,                       // 14b call 0x1b2
    0xa2, 0xb9, 0x7d,                       // 14e mov %al,0x7db9
    0xc6, 0x06, 0xb8, 0x7d, 0x01,           // 151 movb $0x1,0x7db8
    0xb0, 0x20,                             // 156 mov $0x20,%al
    0xe6, 0xa0,                             // 158 out %al,$0xa0
    0xe6, 0x20,                             // 15a out %al,$0x20
    0x66, 0x61,                             // 15c popal
    0xcf,                                   // 15e iret
    0xba, 0xf8, 0x0c,                       // 15f mov $0xcf8,%dx
    0x66, 0xef,                             // 162 out %eax,(%dx)
    0xc3,                                   // 164 ret
    0x66, 0x50,                             // 165 push %eax
    0x66, 0xb8, 0x88, 0x20, 0x00, 0x80,     // 167 mov $0x80002088,%eax
    0xe8, 0xef, 0xff,                       // 16d call 0x15f
    0xba, 0xfc, 0x0c,                       // 170 mov $0xcfc,%dx
    0x66, 0xb8, 0x04, 0x00, 0x00, 0x00,     // 173 mov $0x4,%eax
    0x66, 0xef,                             // 179 out %eax,(%dx)
    0x66, 0xb8, 0x8c, 0x20, 0x00, 0x80,     // 17b mov $0x8000208c,%eax
    0xe8, 0xdb, 0xff,                       // 181 call 0x15f
    0xba, 0xfc, 0x0c,                       // 184 mov $0xcfc,%dx
    0x66, 0x89, 0xd8,                       // 187 mov %ebx,%eax
    0x66, 0xef,                             // 18a out %eax,(%dx)
    0x66, 0xb8, 0x90, 0x20, 0x00, 0x80,     // 18c mov $0x80002090,%eax
    0xe8, 0xca, 0xff,                       // 192 call 0x15f
    0xba, 0xfc, 0x0c,                       // 195 mov $0xcfc,%dx
    0x66, 0x89, 0xc8,                       // 198 mov %ecx,%eax
    0x66, 0xef,                             // 19b out %eax,(%dx)
    0x66, 0xb8, 0x94, 0x20, 0x00, 0x80,     // 19d mov $0x80002094,%eax
    0xe8, 0xb9, 0xff,                       // 1a3 call 0x15f
    0xba, 0xfc, 0x0c,                       // 1a6 mov $0xcfc,%dx
    0x66, 0x58,                             // 1a9 pop %eax
    0xc3,                                   // 1ab ret
    0xe8, 0xb6, 0xff,                       // 1ac call 0x165
    0x66, 0xef,                             // 1af out %eax,(%dx)
    0xc3,                                   // 1b1 ret
    0xe8, 0xb0, 0xff,                       // 1b2 call 0x165
    0x66, 0xed,                             // 1b5 in (%dx),%eax
    0xc3,                                   // 1b7 ret
];

const RNG_IRQ_OK: &str = "virtio-rng interrupt: ISR 1, 16 random bytes\n";

/// The same driver taking an MSI-X interrupt instead: table entry 0 (through the window, BAR 4 +
/// 0x4000) = address 0xfee00000, data 0x40; MSI-X enabled in its capability (byte 0x9b);
/// `queue_msix_vector` 0; the handler at vector 0x40 of the IVT, reached through the LAPIC.
/// With MSI-X the ISR stays 0. Source: `tests/data/virtio_rng_msix.s`.
#[rustfmt::skip]
const RNG_MSIX_CODE: &[u8] = &[
    0xfa,                                   // 000 cli
    0x31, 0xc0,                             // 001 xor %ax,%ax
    0x8e, 0xd8,                             // 003 mov %ax,%ds
    0x8e, 0xc0,                             // 005 mov %ax,%es
    0x8e, 0xd0,                             // 007 mov %ax,%ss
    0xbc, 0x00, 0x7c,                       // 009 mov $0x7c00,%sp
    0xfc,                                   // 00c cld
    0xbf, 0x00, 0x60,                       // 00d mov $0x6000,%di
    0xb9, 0x80, 0x02,                       // 010 mov $0x280,%cx
    0xf3, 0xab,                             // 013 rep stos %ax,%es:(%di)
    0xc7, 0x06, 0x00, 0x60, 0x00, 0x64,     // 015 movw $0x6400,0x6000
    0xc7, 0x06, 0x08, 0x60, 0x10, 0x00,     // 01b movw $0x10,0x6008
    0xc7, 0x06, 0x0c, 0x60, 0x02, 0x00,     // 021 movw $0x2,0x600c
    0xc7, 0x06, 0x00, 0x01, 0x55, 0x7d,     // 027 movw $0x7d55,0x100
    0xc7, 0x06, 0x02, 0x01, 0x00, 0x00,     // 02d movw $0x0,0x102
    0x66, 0xbb, 0x00, 0x40, 0x00, 0x00,     // 033 mov $0x4000,%ebx
    0x66, 0xb9, 0x04, 0x00, 0x00, 0x00,     // 039 mov $0x4,%ecx
    0x66, 0xb8, 0x00, 0x00, 0xe0, 0xfe,     // 03f mov $0xfee00000,%eax
    0xe8, 0x76, 0x01,                       // 045 call 0x1be
    0xbb, 0x04, 0x40,                       // 048 mov $0x4004,%bx
    0x66, 0x31, 0xc0,                       // 04b xor %eax,%eax
    0xe8, 0x6d, 0x01,                       // 04e call 0x1be
    0xbb, 0x08, 0x40,                       // 051 mov $0x4008,%bx
    0xb0, 0x40,                             // 054 mov $0x40,%al
    0xe8, 0x65, 0x01,                       // 056 call 0x1be
    0xbb, 0x0c, 0x40,                       // 059 mov $0x400c,%bx
    0x66, 0x31, 0xc0,                       // 05c xor %eax,%eax
    0xe8, 0x5c, 0x01,                       // 05f call 0x1be
    0x66, 0xb8, 0x98, 0x20, 0x00, 0x80,     // 062 mov $0x80002098,%eax
    0xe8, 0x06, 0x01,                       // 068 call 0x171
    0xba, 0xfc, 0x0c,                       // 06b mov $0xcfc,%dx
    0x66, 0xb8, 0x00, 0x00, 0x00, 0x80,     // 06e mov $0x80000000,%eax
    0x66, 0xef,                             // 074 out %eax,(%dx)
    0x66, 0x31, 0xc0,                       // 076 xor %eax,%eax
    0x66, 0xbb, 0x14, 0x00, 0x00, 0x00,     // 079 mov $0x14,%ebx
    0x66, 0xb9, 0x01, 0x00, 0x00, 0x00,     // 07f mov $0x1,%ecx
    0xe8, 0x36, 0x01,                       // 085 call 0x1be
    0xb0, 0x03,                             // 088 mov $0x3,%al
    0xe8, 0x31, 0x01,                       // 08a call 0x1be
    0xb1, 0x04,                             // 08d mov $0x4,%cl
    0xb3, 0x08,                             // 08f mov $0x8,%bl
    0xb0, 0x01,                             // 091 mov $0x1,%al
    0xe8, 0x28, 0x01,                       // 093 call 0x1be
    0xb3, 0x0c,                             // 096 mov $0xc,%bl
    0xe8, 0x23, 0x01,                       // 098 call 0x1be
    0xb1, 0x01,                             // 09b mov $0x1,%cl
    0xb3, 0x14,                             // 09d mov $0x14,%bl
    0xb0, 0x0b,                             // 09f mov $0xb,%al
    0xe8, 0x1a, 0x01,                       // 0a1 call 0x1be
    0xe8, 0x1d, 0x01,                       // 0a4 call 0x1c4
    0xa8, 0x08,                             // 0a7 test $0x8,%al
    0x0f, 0x84, 0xa2, 0x00,                 // 0a9 je 0x14f
    0xb1, 0x02,                             // 0ad mov $0x2,%cl
    0xb3, 0x16,                             // 0af mov $0x16,%bl
    0x66, 0x31, 0xc0,                       // 0b1 xor %eax,%eax
    0xe8, 0x07, 0x01,                       // 0b4 call 0x1be
    0xb3, 0x18,                             // 0b7 mov $0x18,%bl
    0xb0, 0x04,                             // 0b9 mov $0x4,%al
    0xe8, 0x00, 0x01,                       // 0bb call 0x1be
    0xb3, 0x1a,                             // 0be mov $0x1a,%bl
    0x66, 0x31, 0xc0,                       // 0c0 xor %eax,%eax
    0xe8, 0xf8, 0x00,                       // 0c3 call 0x1be
    0xb1, 0x04,                             // 0c6 mov $0x4,%cl
    0xb3, 0x20,                             // 0c8 mov $0x20,%bl
    0xb8, 0x00, 0x60,                       // 0ca mov $0x6000,%ax
    0xe8, 0xee, 0x00,                       // 0cd call 0x1be
    0xb3, 0x28,                             // 0d0 mov $0x28,%bl
    0xb8, 0x00, 0x61,                       // 0d2 mov $0x6100,%ax
    0xe8, 0xe6, 0x00,                       // 0d5 call 0x1be
    0xb3, 0x30,                             // 0d8 mov $0x30,%bl
    0xb8, 0x00, 0x62,                       // 0da mov $0x6200,%ax
    0xe8, 0xde, 0x00,                       // 0dd call 0x1be
    0xb1, 0x02,                             // 0e0 mov $0x2,%cl
    0xb3, 0x1c,                             // 0e2 mov $0x1c,%bl
    0xb8, 0x01, 0x00,                       // 0e4 mov $0x1,%ax
    0xe8, 0xd4, 0x00,                       // 0e7 call 0x1be
    0xb1, 0x01,                             // 0ea mov $0x1,%cl
    0xb3, 0x14,                             // 0ec mov $0x14,%bl
    0xb0, 0x0f,                             // 0ee mov $0xf,%al
    0xe8, 0xcb, 0x00,                       // 0f0 call 0x1be
    0xc7, 0x06, 0x02, 0x61, 0x01, 0x00,     // 0f3 movw $0x1,0x6102
    0xb1, 0x02,                             // 0f9 mov $0x2,%cl
    0xbb, 0x00, 0x30,                       // 0fb mov $0x3000,%bx
    0x66, 0x31, 0xc0,                       // 0fe xor %eax,%eax
    0xe8, 0xba, 0x00,                       // 101 call 0x1be
    0xfa,                                   // 104 cli
    0x80, 0x3e, 0xca, 0x7d, 0x00,           // 105 cmpb $0x0,0x7dca
    0x75, 0x04,                             // 10a jne 0x110
    0xfb,                                   // 10c sti
    0xf4,                                   // 10d hlt
    0xeb, 0xf4,                             // 10e jmp 0x104
    0x83, 0x3e, 0x02, 0x62, 0x01,           // 110 cmpw $0x1,0x6202
    0x75, 0x38,                             // 115 jne 0x14f
    0x83, 0x3e, 0x08, 0x62, 0x10,           // 117 cmpw $0x10,0x6208
    0x75, 0x31,                             // 11c jne 0x14f
    0x80, 0x3e, 0xcb, 0x7d, 0x00,           // 11e cmpb $0x0,0x7dcb
    0x75, 0x2a,                             // 123 jne 0x14f
    0x66, 0xa1, 0x00, 0x64,                 // 125 mov 0x6400,%eax
    0x66, 0x0b, 0x06, 0x04, 0x64,           // 129 or 0x6404,%eax
    0x66, 0x0b, 0x06, 0x08, 0x64,           // 12e or 0x6408,%eax
    0x66, 0x0b, 0x06, 0x0c, 0x64,           // 133 or 0x640c,%eax
    0x74, 0x15,                             // 138 je 0x14f
    0xbe, 0xcc, 0x7d,                       // 13a mov $0x7dcc,%si
    0xba, 0xf8, 0x03,                       // 13d mov $0x3f8,%dx
    0xac,                                   // 140 lods %ds:(%si),%al
    0x84, 0xc0,                             // 141 test %al,%al
    0x74, 0x03,                             // 143 je 0x148
    0xee,                                   // 145 out %al,(%dx)
    0xeb, 0xf8,                             // 146 jmp 0x140
    0xb0, 0x10,                             // 148 mov $0x10,%al
    0xe6, 0xf4,                             // 14a out %al,$0xf4
    0xf4,                                   // 14c hlt
    0xeb, 0xfd,                             // 14d jmp 0x14c
    0xb0, 0x12,                             // 14f mov $0x12,%al
    0xe6, 0xf4,                             // 151 out %al,$0xf4
    0xeb, 0xf7,                             // 153 jmp 0x14c
    0x66, 0x60,                             // 155 pushal
    0x66, 0xbb, 0x00, 0x10, 0x00, 0x00,     // 157 mov $0x1000,%ebx
    0x66, 0xb9, 0x01, 0x00, 0x00, 0x00,     // 15d mov $0x1,%ecx
    0xe8, 0x5e, 0x00,                       // 163 call 0x1c4
    0xa2, 0xcb, 0x7d,                       // 166 mov %al,0x7dcb
    0xc6, 0x06, 0xca, 0x7d, 0x01,           // 169 movb $0x1,0x7dca
    0x66, 0x61,                             // 16e popal
    0xcf,                                   // 170 iret
    0xba, 0xf8, 0x0c,                       // 171 mov $0xcf8,%dx
    0x66, 0xef,                             // 174 out %eax,(%dx)
    0xc3,                                   // 176 ret
    0x66, 0x50,                             // 177 push %eax
    0x66, 0xb8, 0x88, 0x20, 0x00, 0x80,     // 179 mov $0x80002088,%eax
    0xe8, 0xef, 0xff,                       // 17f call 0x171
    0xba, 0xfc, 0x0c,                       // 182 mov $0xcfc,%dx
    0x66, 0xb8, 0x04, 0x00, 0x00, 0x00,     // 185 mov $0x4,%eax
    0x66, 0xef,                             // 18b out %eax,(%dx)
    0x66, 0xb8, 0x8c, 0x20, 0x00, 0x80,     // 18d mov $0x8000208c,%eax
    0xe8, 0xdb, 0xff,                       // 193 call 0x171
    0xba, 0xfc, 0x0c,                       // 196 mov $0xcfc,%dx
    0x66, 0x89, 0xd8,                       // 199 mov %ebx,%eax
    0x66, 0xef,                             // 19c out %eax,(%dx)
    0x66, 0xb8, 0x90, 0x20, 0x00, 0x80,     // 19e mov $0x80002090,%eax
    0xe8, 0xca, 0xff,                       // 1a4 call 0x171
    0xba, 0xfc, 0x0c,                       // 1a7 mov $0xcfc,%dx
    0x66, 0x89, 0xc8,                       // 1aa mov %ecx,%eax
    0x66, 0xef,                             // 1ad out %eax,(%dx)
    0x66, 0xb8, 0x94, 0x20, 0x00, 0x80,     // 1af mov $0x80002094,%eax
    0xe8, 0xb9, 0xff,                       // 1b5 call 0x171
    0xba, 0xfc, 0x0c,                       // 1b8 mov $0xcfc,%dx
    0x66, 0x58,                             // 1bb pop %eax
    0xc3,                                   // 1bd ret
    0xe8, 0xb6, 0xff,                       // 1be call 0x177
    0x66, 0xef,                             // 1c1 out %eax,(%dx)
    0xc3,                                   // 1c3 ret
    0xe8, 0xb0, 0xff,                       // 1c4 call 0x177
    0x66, 0xed,                             // 1c7 in (%dx),%eax
    0xc3,                                   // 1c9 ret
];

const RNG_MSIX_OK: &str = "virtio-rng MSI-X: vector 0x40, ISR 0\n";

/// A 1 MiB disk whose boot sector is `code` followed by the flag and ISR bytes (0) and `msg`.
fn driver_disk(tag: &str, code: &[u8], msg: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("seabios-rng-{}-{tag}.img", std::process::id()));
    let mut img = vec![0u8; 1 << 20];
    img[..code.len()].copy_from_slice(code);
    // code.len(): flag, + 1: the ISR value the handler read, + 2: the message (NUL-terminated).
    let at = code.len() + 2;
    img[at..at + msg.len()].copy_from_slice(msg.as_bytes());
    assert!(at + msg.len() < 510);
    img[510] = 0x55;
    img[511] = 0xaa;
    std::fs::write(&p, img).unwrap();
    p
}

fn rng_interrupt(polling: bool, msix: bool) {
    let (code, msg) = if msix {
        (RNG_MSIX_CODE, RNG_MSIX_OK)
    } else {
        (RNG_IRQ_CODE, RNG_IRQ_OK)
    };
    let tag = format!("{polling}-{msix}");
    let disk = driver_disk(&tag, code, msg);
    let r = run_guest(&RunConfig {
        payload: Payload::Firmware(SEABIOS_PATH.into()),
        polling,
        console: Console::Capture,
        timeout: Some(Duration::from_secs(300)),
        disk: Some(disk.clone()),
        rng: true,
        ..Default::default()
    })
    .unwrap();
    let text = String::from_utf8_lossy(&r.serial).to_string();
    let log = String::from_utf8_lossy(&r.debugcon).to_string();
    println!(
        "serial: {text}\n{:?} {:?} {:?} in {:?}",
        r.end, r.kvm, r.client, r.elapsed
    );
    let _ = std::fs::remove_file(&disk);
    assert_eq!(r.end, RunEnd::DebugExit(0x10), "{text}\n{log}");
    let plain: String = text
        .chars()
        .filter(|c| !matches!(c, '.' | '\r' | '\n'))
        .collect();
    assert!(plain.contains(msg.trim_end()), "{text:?}");
    assert!(r.kvm.irqs > 0, "the interrupt reached KVM: {:?}", r.kvm);
}

#[test]
fn boot_sector_drives_virtio_rng_and_takes_its_intx_notify() {
    if !skip("boot_sector_drives_virtio_rng_and_takes_its_intx_notify") {
        rng_interrupt(false, false);
    }
}

#[test]
fn boot_sector_drives_virtio_rng_and_takes_its_intx_polling() {
    if !skip("boot_sector_drives_virtio_rng_and_takes_its_intx_polling") {
        rng_interrupt(true, false);
    }
}

#[test]
fn boot_sector_drives_virtio_rng_and_takes_its_msix_notify() {
    if !skip("boot_sector_drives_virtio_rng_and_takes_its_msix_notify") {
        rng_interrupt(false, true);
    }
}

#[test]
fn boot_sector_drives_virtio_rng_and_takes_its_msix_polling() {
    if !skip("boot_sector_drives_virtio_rng_and_takes_its_msix_polling") {
        rng_interrupt(true, true);
    }
}

/// A boot sector that writes itself (0000:7C00) to LBA 5 with int 13h AH=03h: SeaBIOS sends a
/// virtio-blk OUT request, which lands in the file.
#[rustfmt::skip]
const WRITE_BOOT: &[u8] = &[
    0x31, 0xc0,             // 00 xor ax, ax
    0x8e, 0xc0,             // 02 mov es, ax
    0xb8, 0x01, 0x03,       // 04 mov ax, 0x0301    ; AH=03h write, AL=1 sector
    0xb9, 0x06, 0x00,       // 07 mov cx, 0x0006    ; cylinder 0, sector 6 (LBA 5)
    0xb6, 0x00,             // 0a mov dh, 0         ; head 0 (DL: the boot drive)
    0xbb, 0x00, 0x7c,       // 0c mov bx, 0x7c00    ; ES:BX = this sector
    0xcd, 0x13,             // 0f int 13h
    0x72, 0x07,             // 11 jc fail (0x1a)
    0xb0, 0x10,             // 13 mov al, 0x10
    0xe6, 0xf4,             // 15 out 0xf4, al      ; status 33
    0xf4,                   // 17 hang: hlt
    0xeb, 0xfd,             // 18 jmp hang
    0xb0, 0x11,             // 1a fail: mov al, 0x11
    0xe6, 0xf4,             // 1c out 0xf4, al      ; status 35: the write failed
    0xeb, 0xf7,             // 1e jmp hang
];

fn write_back(polling: bool, read_only: bool) {
    let p = std::env::temp_dir().join(format!(
        "seabios-write-{}-{polling}-{read_only}.img",
        std::process::id()
    ));
    let mut img = vec![0u8; 1 << 20];
    img[..WRITE_BOOT.len()].copy_from_slice(WRITE_BOOT);
    img[0x100..0x110].copy_from_slice(b"written by int13");
    img[510] = 0x55;
    img[511] = 0xaa;
    std::fs::write(&p, &img).unwrap();
    let r = run_guest(&RunConfig {
        payload: Payload::Firmware(SEABIOS_PATH.into()),
        polling,
        console: Console::Capture,
        timeout: Some(Duration::from_secs(300)),
        disk: Some(p.clone()),
        disk_read_only: read_only,
        ..Default::default()
    })
    .unwrap();
    let after = std::fs::read(&p).unwrap();
    let _ = std::fs::remove_file(&p);
    let text = String::from_utf8_lossy(&r.serial).to_string();
    if read_only {
        assert_eq!(r.end, RunEnd::DebugExit(0x11), "IOERR → int 13h CF: {text}");
        assert!(
            after[5 * 512..6 * 512].iter().all(|&b| b == 0),
            "nothing written"
        );
    } else {
        assert_eq!(r.end, RunEnd::DebugExit(0x10), "{text}");
        assert_eq!(
            &after[5 * 512..6 * 512],
            &img[..512],
            "sector 0 copied to LBA 5"
        );
    }
}

#[test]
fn seabios_writes_through_virtio_blk_notify() {
    if !skip("seabios_writes_through_virtio_blk_notify") {
        write_back(false, false);
    }
}

#[test]
fn seabios_write_to_a_read_only_disk_fails_polling() {
    if !skip("seabios_write_to_a_read_only_disk_fails_polling") {
        write_back(true, true);
    }
}
