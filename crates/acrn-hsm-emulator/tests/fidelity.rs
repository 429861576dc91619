//! The emulator against current mainline `drivers/virt/acrn/*.c` and the ACRN hypervisor, for
//! the areas of acrn-semantics.md's corrections box (issue 16). Each test names the functions
//! it follows; each fails if the behaviour changes.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::sync::Arc;

/// bdf as `bus << 8 | dev << 3 | func`.
const fn bdf(bus: u16, dev: u16, func: u16) -> u16 {
    (bus << 8) | (dev << 3) | func
}

/// The default board's assignable endpoint (EmulatorConfig::default: 00:14.0, 8086:a36d).
const ENDPOINT: u16 = bdf(0, 0x14, 0);

fn named_vm(emu: &Emulator, name: &[u8], vcpus: u16, flags: u64) -> (Hsm, Arc<Vm>) {
    let hsm = emu.open_hsm();
    let mut uuid = [0u8; 16];
    uuid[..name.len()].copy_from_slice(name);
    let vm = hsm
        .create_vm(&VmConfig {
            vcpu_num: vcpus,
            vm_flag: flags,
            uuid,
            ..Default::default()
        })
        .unwrap();
    (hsm, Arc::new(vm))
}

/// CREATE_VM through the raw interface with the 16 name bytes as given (all zero allowed).
fn raw_create(emu: &Emulator, name: &[u8]) -> (EmulatedHsm, std::result::Result<i64, Errno>) {
    let eh = emu.open();
    let page = alloc_page().unwrap();
    let mut b = [0u8; 48];
    b[8..8 + name.len()].copy_from_slice(name);
    b[32..40].copy_from_slice(&page.addr().to_le_bytes());
    b[40..48].copy_from_slice(&1u64.to_le_bytes());
    std::mem::forget(page);
    let r = eh.ioctl(ACRN_IOCTL_CREATE_VM, IoctlArg::Bytes(&mut b));
    (eh, r)
}

fn cstr(b: &[u8; 16]) -> &[u8] {
    let n = b.iter().position(|&c| c == 0).unwrap_or(16);
    &b[..n]
}

// ---- Correction 1: the later ioctls reach the hypervisor, which validates them ----

#[test]
fn assign_pcidev_is_validated_by_the_hypervisor() {
    // hypercall.c hcall_assign_pcidev (CREATED, else -EINVAL) → vpci.c vpci_assign_pcidev
    // (the Service VM must own the device, not already passed through, not a (host) bridge,
    // else -ENODEV); hcall_deassign_pcidev (PAUSED or CREATED) → vpci_deassign_pcidev
    // (the VM's vdev at virt_bdf backed by phys_bdf, else -ENODEV).
    let emu = Emulator::new();
    let (_h, vm) = named_vm(&emu, b"pt-a", 1, 0);
    let dev = |phys| PciDev {
        virt_bdf: bdf(0, 5, 0),
        phys_bdf: phys,
        ..Default::default()
    };
    assert_eq!(
        vm.assign_pcidev(&dev(bdf(0, 0x15, 0))).unwrap_err().errno,
        Errno::ENODEV,
        "no such device"
    );
    assert_eq!(
        vm.assign_pcidev(&dev(bdf(0, 0, 0))).unwrap_err().errno,
        Errno::ENODEV,
        "host bridge"
    );
    assert_eq!(
        vm.assign_pcidev(&dev(bdf(0, 0x1c, 0))).unwrap_err().errno,
        Errno::ENODEV,
        "bridge"
    );
    vm.assign_pcidev(&dev(ENDPOINT)).unwrap();
    assert_eq!(
        emu.vpci_devices(vm.vmid()),
        vec![(bdf(0, 5, 0), 0xa36d_8086, Some(ENDPOINT))]
    );
    // Passed through already: another VM cannot have it.
    let (_h2, vm2) = named_vm(&emu, b"pt-b", 1, 0);
    assert_eq!(
        vm2.assign_pcidev(&dev(ENDPOINT)).unwrap_err().errno,
        Errno::ENODEV
    );
    // Not while running, either way.
    vm.start().unwrap();
    assert_eq!(
        vm.deassign_pcidev(&dev(ENDPOINT)).unwrap_err().errno,
        Errno::EINVAL
    );
    vm2.start().unwrap();
    assert_eq!(
        vm2.assign_pcidev(&dev(bdf(0, 0x1f, 6))).unwrap_err().errno,
        Errno::EINVAL
    );
    vm.pause().unwrap();
    let wrong_phys = PciDev {
        phys_bdf: bdf(0, 0x1f, 6),
        ..dev(ENDPOINT)
    };
    assert_eq!(
        vm.deassign_pcidev(&wrong_phys).unwrap_err().errno,
        Errno::ENODEV
    );
    vm.deassign_pcidev(&dev(ENDPOINT)).unwrap();
    assert!(emu.vpci_devices(vm.vmid()).is_empty());
    assert_eq!(
        vm.deassign_pcidev(&dev(ENDPOINT)).unwrap_err().errno,
        Errno::ENODEV
    );
    // Back with the Service VM: assignable again; and a destroyed VM gives its devices back
    // (shutdown_vm).
    let (_h3, vm3) = named_vm(&emu, b"pt-c", 1, 0);
    vm3.assign_pcidev(&dev(ENDPOINT)).unwrap();
    vm3.pause().unwrap();
    vm3.destroy().unwrap();
    let (_h4, vm4) = named_vm(&emu, b"pt-d", 1, 0);
    vm4.assign_pcidev(&dev(ENDPOINT)).unwrap();
}

#[test]
fn ptdev_intr_and_the_interrupt_monitor() {
    // hypercall.c hcall_set_ptdev_intr_info / hcall_reset_ptdev_intr_info: -1 unless the VM is
    // CREATED (reset: or PAUSED), the type is IRQ_INTX, a passthrough vdev sits at virt_bdf
    // backed by phys_bdf, virt_pin < 48 (vPIC pin < 16) and the physical GSI is valid.
    // hcall_vm_intr_monitor + ptdev.c ptirq_get_intr_data: GET_DATA writes (irq, count) pairs and
    // buf_cnt back.
    let emu = Emulator::new();
    let (_h, vm) = named_vm(&emu, b"intx", 1, 0);
    let irq = PtdevIrq {
        ty: 0,
        virt_bdf: bdf(0, 5, 0),
        phys_bdf: ENDPOINT,
        virt_pin: 10,
        phys_pin: 16,
        is_pic_pin: false,
    };
    assert_eq!(
        vm.set_ptdev_intr(&irq).unwrap_err().errno,
        Errno::EPERM,
        "no passthrough device yet"
    );
    vm.assign_pcidev(&PciDev {
        virt_bdf: bdf(0, 5, 0),
        phys_bdf: ENDPOINT,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        vm.set_ptdev_intr(&PtdevIrq { ty: 1, ..irq })
            .unwrap_err()
            .errno,
        Errno::EPERM,
        "MSI"
    );
    assert_eq!(
        vm.set_ptdev_intr(&PtdevIrq {
            virt_pin: 48,
            ..irq
        })
        .unwrap_err()
        .errno,
        Errno::EPERM
    );
    assert_eq!(
        vm.set_ptdev_intr(&PtdevIrq {
            virt_pin: 16,
            is_pic_pin: true,
            ..irq
        })
        .unwrap_err()
        .errno,
        Errno::EPERM,
        "vPIC pin"
    );
    assert_eq!(
        vm.set_ptdev_intr(&PtdevIrq {
            phys_pin: 500,
            ..irq
        })
        .unwrap_err()
        .errno,
        Errno::EPERM
    );
    assert_eq!(vm.intr_monitor_data().unwrap(), vec![]);
    vm.set_ptdev_intr(&irq).unwrap();
    assert_eq!(vm.intr_monitor_data().unwrap(), vec![(16, 0)]);
    vm.start().unwrap();
    assert_eq!(
        vm.set_ptdev_intr(&irq).unwrap_err().errno,
        Errno::EPERM,
        "running"
    );
    assert_eq!(
        vm.reset_ptdev_intr(&irq).unwrap_err().errno,
        Errno::EPERM,
        "running"
    );
    vm.pause().unwrap();
    vm.reset_ptdev_intr(&irq).unwrap();
    assert_eq!(vm.intr_monitor_data().unwrap(), vec![]);

    // The monitor header: buf_cnt > 48 or an unknown cmd → -EINVAL; DELAY_INT (1) → 0.
    let page = alloc_page().unwrap();
    let hdr = |cmd: u32, cnt: u32| {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&cmd.to_le_bytes());
        b[4..8].copy_from_slice(&cnt.to_le_bytes());
        page.write_bytes(0, &b).unwrap();
    };
    hdr(0, 49);
    assert_eq!(vm.vm_intr_monitor(&page).unwrap_err().errno, Errno::EINVAL);
    hdr(2, 4);
    assert_eq!(vm.vm_intr_monitor(&page).unwrap_err().errno, Errno::EINVAL);
    hdr(1, 0);
    vm.vm_intr_monitor(&page).unwrap();
    // GET_DATA writes buf_cnt back (0 entries here), whatever it held.
    hdr(0, 40);
    vm.vm_intr_monitor(&page).unwrap();
    let mut b = [0u8; 8];
    page.read_bytes(0, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 0);
    // hsm.c: the address must be pinnable (else EFAULT), and the header is at the page start.
    assert_eq!(
        vm.backend()
            .ioctl(ACRN_IOCTL_VM_INTR_MONITOR, IoctlArg::Value(0x1000))
            .unwrap_err(),
        Errno::EFAULT
    );
}

#[test]
fn mmiodev_moves_ranges_between_the_service_vm_and_the_user_vm() {
    // hypercall.c hcall_assign_mmiodev (CREATED, else -EINVAL): mmio_dev.c
    // deassign_mmio_dev(service_vm) then assign_mmio_dev(target): every resource page aligned
    // (else -EINVAL); a device with no resources maps nothing and returns 0.
    // hcall_deassign_mmiodev (PAUSED or CREATED) gives the ranges back.
    let emu = Emulator::new();
    let (_h, vm) = named_vm(&emu, b"mmio", 1, 0);
    vm.assign_mmiodev(&MmioDev::default()).unwrap();
    let mut dev = MmioDev {
        name: *b"tpm\0\0\0\0\0",
        ..Default::default()
    };
    dev.res[0] = MmioRes {
        user_vm_pa: 0xfed4_0000,
        host_pa: 0xfed4_0000,
        size: 0x5000,
        mem_type: 0,
    };
    let mut unaligned = dev;
    unaligned.res[0].size = 0x5001;
    assert_eq!(
        vm.assign_mmiodev(&unaligned).unwrap_err().errno,
        Errno::EINVAL
    );
    vm.assign_mmiodev(&dev).unwrap();
    assert!(
        emu.vm_info(vm.vmid())
            .unwrap()
            .regions
            .contains(&(0xfed4_0000, 0x5000))
    );
    // The Service VM no longer maps that range: another VM cannot SET_MEMSEG it
    // (set_vm_memory_region: ept_is_valid_mr(service_vm) fails → -EINVAL).
    let (_h2, other) = named_vm(&emu, b"mmio2", 1, 0);
    let map = MemMap {
        ty: 1,
        attr: 3,
        user_vm_pa: 0x8000_0000,
        vma_base: 0xfed4_1000,
        len: 0x1000,
    };
    assert_eq!(other.set_memseg(&map).unwrap_err().errno, Errno::EINVAL);
    vm.start().unwrap();
    assert_eq!(
        vm.deassign_mmiodev(&dev).unwrap_err().errno,
        Errno::EINVAL,
        "running"
    );
    vm.pause().unwrap();
    vm.deassign_mmiodev(&dev).unwrap();
    assert!(
        !emu.vm_info(vm.vmid())
            .unwrap()
            .regions
            .contains(&(0xfed4_0000, 0x5000))
    );
    other.set_memseg(&map).unwrap();
}

#[test]
fn vdevs_are_the_hypervisors_emulated_devices() {
    // hypercall.c hcall_add_vdev (CREATED; find_emul_dev_ops: ivshmem, vUART MCS9900, vRP;
    // else -EINVAL) and hcall_remove_vdev (CREATED or PAUSED; a vdev at the slot's bdf, else
    // -EINVAL).
    let emu = Emulator::new();
    let (_h, vm) = named_vm(&emu, b"vdev", 1, 0);
    let ivshmem = VDev {
        vendor: 0x1af4,
        device: 0x1110,
        slot: u64::from(bdf(0, 6, 0)),
        ..Default::default()
    };
    assert_eq!(
        vm.create_vdev(&VDev {
            device: 0x1111,
            ..ivshmem
        })
        .unwrap_err()
        .errno,
        Errno::EINVAL,
        "not an emulated device"
    );
    assert_eq!(
        vm.create_vdev(&VDev {
            legacy_id: 1,
            ..ivshmem
        })
        .unwrap_err()
        .errno,
        Errno::EINVAL,
        "id.value compares all 64 bits"
    );
    vm.create_vdev(&ivshmem).unwrap();
    assert_eq!(
        vm.create_vdev(&ivshmem).unwrap_err().errno,
        Errno::EINVAL,
        "slot taken"
    );
    vm.create_vdev(&VDev {
        vendor: 0x9710,
        device: 0x9900,
        slot: u64::from(bdf(0, 7, 0)),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(emu.vpci_devices(vm.vmid()).len(), 2);
    vm.start().unwrap();
    assert_eq!(
        vm.destroy_vdev(&ivshmem).unwrap_err().errno,
        Errno::EINVAL,
        "running"
    );
    vm.pause().unwrap();
    vm.destroy_vdev(&ivshmem).unwrap();
    assert_eq!(
        vm.destroy_vdev(&ivshmem).unwrap_err().errno,
        Errno::EINVAL,
        "gone"
    );
    assert_eq!(emu.vpci_devices(vm.vmid()).len(), 1);
}

#[test]
fn pm_get_cpu_state_takes_the_vm_from_the_command() {
    // hsm.c pmcmd_ioctl (an unknown type: 0, no hypercall) → hcall_get_cpu_pm_state: the VM is
    // the command's bits 31:24 (vmcall.c parse_target_vm), CREATED or PAUSED; no P-state
    // passthrough (is_pt_pstate false: PX_* fail); CX_DATA needs 1 <= index <= cx_cnt.
    let emu = Emulator::with_config(EmulatorConfig {
        cstates: vec![
            CState {
                ty: 1,
                latency: 1,
                power: 1000,
            },
            CState {
                ty: 2,
                latency: 50,
                power: 500,
            },
        ],
        ..EmulatorConfig::default()
    });
    let (_h, vm) = named_vm(&emu, b"pm-a", 1, 0);
    let (_h2, vm2) = named_vm(&emu, b"pm-b", 1, 0);
    let cmd = |vmid: u16, idx: u64, ty: u64| (u64::from(vmid) << 24) | (idx << 8) | ty;
    assert_eq!(vm.cx_count().unwrap(), 2);
    assert_eq!(
        vm.pm_get_cpu_state(cmd(vm.vmid(), 0, 0)).unwrap_err().errno,
        Errno::EPERM,
        "PX_CNT"
    );
    assert_eq!(
        vm.pm_get_cpu_state(cmd(vm.vmid(), 1, 1)).unwrap_err().errno,
        Errno::EPERM,
        "PX_DATA"
    );
    assert_eq!(
        vm.pm_get_cpu_state(cmd(vm.vmid(), 0, 3)).unwrap_err().errno,
        Errno::EPERM,
        "C0"
    );
    assert_eq!(
        vm.pm_get_cpu_state(cmd(vm.vmid(), 3, 3)).unwrap_err().errno,
        Errno::EPERM,
        "C3"
    );
    assert_eq!(
        vm.pm_get_cpu_state(cmd(vm.vmid(), 2, 3)).unwrap(),
        PmState::CState {
            space_id: 1,
            address: 0x416,
            ty: 2,
            latency: 50,
            power: 500
        }
    );
    assert_eq!(
        vm.pm_get_cpu_state(cmd(vm.vmid(), 0, 9)).unwrap(),
        PmState::None
    );
    // The other VM's state through this file, and the Service VM's (vmid 0: running) fails.
    vm2.start().unwrap();
    assert_eq!(
        vm.pm_get_cpu_state(cmd(vm2.vmid(), 0, 2))
            .unwrap_err()
            .errno,
        Errno::EPERM
    );
    vm2.pause().unwrap();
    assert_eq!(
        vm.pm_get_cpu_state(cmd(vm2.vmid(), 0, 2)).unwrap(),
        PmState::Count(2)
    );
    assert_eq!(
        vm.pm_get_cpu_state(cmd(0, 0, 2)).unwrap_err().errno,
        Errno::EPERM
    );
    // The kernel copies the 32-byte C-state over the 8-byte argument: given as 8 bytes, it
    // cannot be held (EFAULT); the counts fit.
    let mut b = cmd(vm.vmid(), 1, 3).to_le_bytes();
    assert_eq!(
        vm.backend()
            .ioctl(ACRN_IOCTL_PM_GET_CPU_STATE, IoctlArg::Bytes(&mut b))
            .unwrap_err(),
        Errno::EFAULT
    );
    let mut b = cmd(vm.vmid(), 0, 2).to_le_bytes();
    vm.backend()
        .ioctl(ACRN_IOCTL_PM_GET_CPU_STATE, IoctlArg::Bytes(&mut b))
        .unwrap();
    assert_eq!(u64::from_le_bytes(b), 2);
}

// ---- Correction 3: the interrupt ioctls are validated by the hypervisor ----

#[test]
fn inject_msi_and_set_irqline_are_checked() {
    // vlapic.c vlapic_inject_msi → inject_msi_for_non_lapic_pt: address bits 31:20 must be
    // 0xFEE, else -1. hypercall.c hcall_set_irqline: gsi < get_vm_gsicount (48), else -1; an
    // unknown op is ignored by the vPIC/vIOAPIC and returns 0.
    let emu = Emulator::new();
    let (_h, vm) = named_vm(&emu, b"irq", 1, 0);
    assert_eq!(
        vm.inject_msi(0xfed0_0000, 0x30).unwrap_err().errno,
        Errno::EPERM
    );
    assert_eq!(vm.inject_msi(0, 0x30).unwrap_err().errno, Errno::EPERM);
    vm.inject_msi(0x1_fee0_1000, 0x31).unwrap();
    vm.set_irqline(47, 0).unwrap();
    vm.set_irqline(4, 9).unwrap();
    assert_eq!(vm.set_irqline(48, 0).unwrap_err().errno, Errno::EPERM);
    let id = vm.vmid();
    assert_eq!(
        emu.interrupts(),
        vec![
            InterruptEvent::Msi {
                vmid: id,
                addr: 0x1_fee0_1000,
                data: 0x31
            },
            InterruptEvent::IrqLine {
                vmid: id,
                gsi: 47,
                op: 0
            },
            InterruptEvent::IrqLine {
                vmid: id,
                gsi: 4,
                op: 9
            },
        ]
    );
}

// ---- Correction 6: IRQFD ----

fn eventfd() -> i32 {
    // SAFETY: creates a new eventfd; the test closes it.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(fd >= 0);
    fd
}

fn signal(fd: i32) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a local to an eventfd this test owns.
    assert_eq!(unsafe { libc::write(fd, (&raw const one).cast(), 8) }, 8);
}

/// The eventfd's counter as the kernel reports it (`eventfd-count` in fdinfo, hexadecimal):
/// reading the fd would empty it, and writing it back would be a signal.
fn peek(fd: i32) -> u64 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix("eventfd-count:"))
        .unwrap();
    u64::from_str_radix(line.trim(), 16).unwrap()
}

#[test]
fn irqfd_injects_once_per_signal_and_never_reads_the_counter() {
    // irqfd.c hsm_irqfd_wakeup: every eventfd signal injects (acrn_msi_inject) and the counter is
    // never read; acrn_irqfd_assign checks a pending count once (vfs_poll);
    // acrn_irqfd_config looks at ACRN_IRQFD_FLAG_DEASSIGN only; fdget / eventfd_ctx_fdget: -1 is
    // EBADF; hsm_irqfd_shutdown empties the counter (eventfd_ctx_remove_wait_queue).
    let emu = Emulator::new();
    let (_h, vm) = named_vm(&emu, b"irqfd", 1, 0);
    let id = vm.vmid();
    let msis = || {
        emu.interrupts()
            .iter()
            .filter(|e| matches!(e, InterruptEvent::IrqfdMsi { .. }))
            .count()
    };
    let fd = eventfd();
    signal(fd);
    // Unknown flag bits are ignored: 0x6 is an assign. The pending count injects once.
    vm.irqfd(&IrqFd {
        fd,
        flags: 0x6,
        msi_addr: 0xfee0_0000,
        msi_data: 0x41,
    })
    .unwrap();
    wait_until("the pending signal", || msis() == 1);
    signal(fd);
    wait_until("the second signal", || msis() == 2);
    signal(fd);
    wait_until("the third signal", || msis() == 3);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(msis(), 3, "one injection per signal, no more");
    assert_eq!(peek(fd), 3, "the counter is never consumed");
    assert_eq!(
        emu.interrupts().last(),
        Some(&InterruptEvent::IrqfdMsi {
            vmid: id,
            addr: 0xfee0_0000,
            data: 0x41
        })
    );
    // EBADF for fd -1, assign and deassign alike.
    for flags in [0, 1] {
        assert_eq!(
            vm.irqfd(&IrqFd {
                fd: -1,
                flags,
                msi_addr: 0,
                msi_data: 0
            })
            .unwrap_err()
            .errno,
            Errno::EBADF
        );
    }
    vm.irqfd(&IrqFd {
        fd,
        flags: 1 | 0x8,
        msi_addr: 0,
        msi_data: 0,
    })
    .unwrap();
    assert_eq!(peek(fd), 0, "deassign empties the counter");
    signal(fd);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(msis(), 3, "deassigned");
    // An irqfd whose MSI the hypervisor refuses (not 0xFEExxxxx) injects nothing.
    let bad = eventfd();
    vm.irqfd(&IrqFd {
        fd: bad,
        flags: 0,
        msi_addr: 0xfec0_0000,
        msi_data: 1,
    })
    .unwrap();
    signal(bad);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(msis(), 3);
    for f in [fd, bad] {
        // SAFETY: closes an fd this test created.
        unsafe { libc::close(f) };
    }
}

// ---- Correction 7: VM names and slots ----

#[test]
fn names_and_slots_as_the_hypervisor_allocates_them() {
    // vmcall.c parse_target_vm / allocate_dynamical_vmid, vm.c get_vmid_by_name (an empty name
    // never matches), get_unused_vmid (the lowest slot with an empty name), create_vm ("ACRN
    // VM_<id>"), shutdown_vm (erases the name), hypercall.c hcall_create_vm (any failure erases
    // the target slot's name, live VM or not).
    let emu = Emulator::new();
    let (a, ra) = raw_create(&emu, b"");
    let (b, rb) = raw_create(&emu, b"");
    assert_eq!((ra, rb), (Ok(0), Ok(0)), "two empty-named VMs coexist");
    assert_eq!((a.vmid(), b.vmid()), (1, 2));
    assert_eq!(cstr(&emu.vm_info(1).unwrap().name), b"ACRN VM_1");
    assert_eq!(cstr(&emu.slot_name(2).unwrap()), b"ACRN VM_2");
    // cpu_affinity copied into the slot's configuration: one vCPU per pCPU in it.
    assert_eq!(emu.vm_info(1).unwrap().vcpu_num, 1);
    // Destroyed: the name is erased and the lowest free slot is handed out again, to any name.
    a.ioctl(ACRN_IOCTL_PAUSE_VM, IoctlArg::None).unwrap();
    a.ioctl(ACRN_IOCTL_DESTROY_VM, IoctlArg::None).unwrap();
    assert_eq!(emu.slot_name(1), Some([0; 16]));
    let (c, rc) = raw_create(&emu, b"later");
    assert_eq!((rc, c.vmid()), (Ok(0), 1));
    // A create naming a live VM fails, and erases that live VM's slot name: the slot looks free,
    // so the next create (any name) targets it and fails as well, until the VM is gone.
    let (_d, rd) = raw_create(&emu, b"later");
    assert_eq!(rd, Err(Errno::EINVAL));
    assert_eq!(emu.slot_name(1), Some([0; 16]));
    assert_eq!(
        emu.vm_state(1),
        Some(VmState::Created),
        "the live VM is untouched"
    );
    let (_e, re) = raw_create(&emu, b"fresh");
    assert_eq!(
        re,
        Err(Errno::EINVAL),
        "slot 1 is handed out but not powered off"
    );
    c.ioctl(ACRN_IOCTL_PAUSE_VM, IoctlArg::None).unwrap();
    c.ioctl(ACRN_IOCTL_DESTROY_VM, IoctlArg::None).unwrap();
    let (f, rf) = raw_create(&emu, b"fresh");
    assert_eq!((rf, f.vmid()), (Ok(0), 1));
    // The name "ACRN VM_2" given explicitly matches VM 2, which is live: EINVAL.
    let (_g, rg) = raw_create(&emu, b"ACRN VM_2");
    assert_eq!(rg, Err(Errno::EINVAL));
    assert_eq!(emu.vm_state(2), Some(VmState::Created));
    drop(b);
}

// ---- Correction 8: what the hypervisor emulates itself ----

/// Runs `ops` (JSON) on one vCPU of a VM served by the plain DM loop; returns the run and what
/// the DM saw.
fn run_with_dm(emu: &Emulator, vm: &Arc<Vm>, ops: &str) -> (RunResult, Vec<Seen>) {
    vm.create_ioreq_client().unwrap();
    let dm = spawn_dm(vm.clone(), |s: &Seen| {
        if s.dir == ACRN_IOREQ_DIR_READ {
            0x11
        } else {
            0
        }
    });
    vm.start().unwrap();
    let w = Workload::from_json(&format!(r#"{{"vcpus": [{ops}]}}"#)).unwrap();
    let r = emu.guest(vm.vmid()).unwrap().run(&w).unwrap();
    vm.pause().unwrap();
    vm.destroy_ioreq_client().unwrap();
    (r, dm.join().unwrap().seen)
}

#[test]
fn vpic_vioapic_and_vlapic_never_reach_the_device_model() {
    // vm.c create_vm: vpic_init unless LAPIC passthrough (vpic.c vpic_register_io_handler:
    // 0x20-0x21, 0xA0-0xA1, 0x4D0-0x4D1), vioapic_init (MMIO 0xFEC0_0000), the vLAPIC page;
    // io_req.c emulate_io forwards only what hv_emulate_pio/mmio answer -ENODEV to.
    let emu = Emulator::new();
    let (_h, vm) = named_vm(&emu, b"vpic", 1, 0);
    let (r, seen) = run_with_dm(
        &emu,
        &vm,
        r#"[{"pio": 32, "size": 1, "write": 17}, {"pio": 33, "size": 1, "read": true, "expect": 0},
            {"pio": 160, "size": 1, "read": true}, {"pio": 1232, "size": 1, "write": 0},
            {"pio": 1233, "size": 1, "read": true},
            {"mmio": "0xfec00010", "size": 4, "read": true, "expect": 0},
            {"mmio": "0xfee00300", "size": 4, "write": 5},
            {"pio": 34, "size": 1, "read": true, "expect": 17},
            {"mmio": "0xfec01000", "size": 4, "read": true, "expect": 17}]"#,
    );
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.issued, 2, "only 0x22 and 0xFEC0_1000 become requests");
    assert_eq!(
        seen.iter().map(|s| (s.ty, s.addr)).collect::<Vec<_>>(),
        vec![
            (ACRN_IOREQ_TYPE_PORTIO, 0x22),
            (ACRN_IOREQ_TYPE_MMIO, 0xfec0_1000)
        ]
    );
    // A LAPIC-passthrough (RT) VM has no vPIC: its PIC ports go to the device model, and the
    // RT VM's vRTC and reset ports are the hypervisor's (vrtc_init, register_reset_port_handler).
    let lapic_pt = GUEST_FLAG_LAPIC_PASSTHROUGH | GUEST_FLAG_RT;
    let (_h2, vm2) = named_vm(&emu, b"lapicpt", 1, lapic_pt);
    let (r, seen) = run_with_dm(
        &emu,
        &vm2,
        r#"[{"pio": 32, "size": 1, "read": true, "expect": 17},
            {"pio": 112, "size": 1, "write": 10}, {"pio": 113, "size": 1, "read": true, "expect": 0},
            {"pio": 100, "size": 1, "read": true, "expect": 255}]"#,
    );
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(seen.iter().map(|s| s.addr).collect::<Vec<_>>(), vec![0x20]);
}

#[test]
fn vpci_filters_cf8_cfc_for_a_post_launched_vm() {
    // vpci.c vpci_pio_cfgaddr_read (never forwarded; 4 bytes: the latch, else all ones),
    // vpci_pio_cfgaddr_write (4 bytes latch `val & !0x7f000003` and forward unless the device is
    // the HV's; other sizes dropped), vpci_pio_cfgdata_read/write (atomic_readandclear32 of the
    // latch on every access; disabled or misaligned (pci_is_valid_access): all ones / dropped
    // in the HV).
    let emu = Emulator::new();
    let (_h, vm) = named_vm(&emu, b"vpci", 1, 0);
    let (r, seen) = run_with_dm(
        &emu,
        &vm,
        r#"[{"pio": 3320, "size": 4, "write": "0x80001800"},
            {"pio": 3320, "size": 4, "read": true, "expect": "0x80001800"},
            {"pio": 3320, "size": 2, "read": true, "expect": "0xffff"},
            {"pio": 3324, "size": 4, "read": true, "expect": 17},
            {"pio": 3324, "size": 4, "read": true, "expect": "0xffffffff"},
            {"pio": 3320, "size": 4, "write": "0x80001804"},
            {"pio": 3325, "size": 2, "read": true, "expect": "0xffff"},
            {"pio": 3320, "size": 4, "write": "0x80001808"},
            {"pio": 3320, "size": 2, "write": 0},
            {"pio": 3320, "size": 4, "read": true, "expect": "0x80001808"},
            {"pio": 3326, "size": 2, "write": 5},
            {"pio": 3326, "size": 2, "write": 6}]"#,
    );
    assert!(r.is_clean(), "{r:?}");
    // The DM sees: the CFC read of 00:03.0 reg 0, the write to reg 0xA; nothing else.
    let pci: Vec<_> = seen
        .iter()
        .map(|s| (s.ty, s.dir, s.bdf, s.reg, s.value))
        .collect();
    assert_eq!(
        pci,
        vec![
            (ACRN_IOREQ_TYPE_PCICFG, ACRN_IOREQ_DIR_READ, (0, 3, 0), 0, 0),
            (
                ACRN_IOREQ_TYPE_PCICFG,
                ACRN_IOREQ_DIR_WRITE,
                (0, 3, 0),
                0xa,
                5
            ),
        ],
        "{seen:?}"
    );
    // The forwarded 0xCF8 writes reached HSM's handle_cf8cfc (latched there, completed in the
    // kernel); the 2-byte one did not.
    assert_eq!(vm.emulated_hsm().unwrap().pci_conf_addr(), 0x8000_1808);
    assert_eq!(r.issued, 5, "three 0xCF8 writes, two data accesses");
}

#[test]
fn vpci_answers_for_the_devices_the_hypervisor_owns() {
    // vpci.c vpci_pio_cfgaddr_write: a post-launched VM's 0xCF8 write is forwarded only when
    // find_available_vdev finds no device (or a quirk device); vpci_read_cfg then answers for a
    // passthrough or hypervisor-emulated device itself. vpci_mmio_cfg_access: the MMCONFIG
    // window (0xE000_0000) likewise, misaligned accesses answered with all ones.
    let emu = Emulator::new();
    let (_h, vm) = named_vm(&emu, b"owned", 1, 0);
    vm.assign_pcidev(&PciDev {
        virt_bdf: bdf(0, 5, 0),
        phys_bdf: ENDPOINT,
        ..Default::default()
    })
    .unwrap();
    vm.create_vdev(&VDev {
        vendor: 0x1af4,
        device: 0x1110,
        slot: u64::from(bdf(0, 6, 0)),
        ..Default::default()
    })
    .unwrap();
    let (r, seen) = run_with_dm(
        &emu,
        &vm,
        r#"[{"pci": {"bus": 0, "dev": 5, "func": 0, "reg": 0}, "size": 4, "read": true, "expect": "0xa36d8086"},
            {"pci": {"bus": 0, "dev": 6, "func": 0, "reg": 2}, "size": 2, "read": true, "expect": "0x1110"},
            {"pci": {"bus": 0, "dev": 5, "func": 0, "reg": 4}, "size": 4, "write": 7},
            {"mmio": "0xe0028000", "size": 4, "read": true, "expect": "0xa36d8086"},
            {"mmio": "0xe0030001", "size": 2, "read": true, "expect": "0xffff"},
            {"mmio": "0xe0018000", "size": 4, "read": true, "expect": 17},
            {"pci": {"bus": 0, "dev": 3, "func": 0, "reg": 0}, "size": 4, "read": true, "expect": 17}]"#,
    );
    assert!(r.is_clean(), "{r:?}");
    let got: Vec<_> = seen.iter().map(|s| (s.ty, s.addr, s.bdf)).collect();
    assert_eq!(
        got,
        vec![
            (ACRN_IOREQ_TYPE_MMIO, 0xe001_8000, (0, 0, 0)),
            (ACRN_IOREQ_TYPE_PCICFG, 0, (0, 3, 0)),
        ],
        "only 00:03.0 reaches the DM"
    );
    // A quirk passthrough device is left to the device model.
    let emu = Emulator::new();
    let (_h, vm) = named_vm(&emu, b"quirk", 1, 0);
    vm.assign_pcidev(&PciDev {
        ty: 1,
        virt_bdf: bdf(0, 5, 0),
        phys_bdf: ENDPOINT,
        ..Default::default()
    })
    .unwrap();
    let (r, seen) = run_with_dm(
        &emu,
        &vm,
        r#"[{"pci": {"bus": 0, "dev": 5, "func": 0, "reg": 0}, "size": 4, "read": true, "expect": 17}]"#,
    );
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(seen.len(), 1);
}
