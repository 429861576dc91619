//! The raw and typed interfaces agree, request by request; interrupts; the real device.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::sync::Arc;

/// Runs the same sequence through the typed API on one emulator and through raw ioctls on
/// another, and compares every result and the resulting slot page.
#[test]
fn raw_and_typed_agree() {
    let typed_emu = Emulator::new();
    let raw_emu = Emulator::new();
    let th = typed_emu.open_hsm();
    let rh = raw_emu.open();
    let uuid = *b"agree\0\0\0\0\0\0\0\0\0\0\0";
    let tpage = Arc::new(alloc_page().unwrap());
    let rpage = alloc_page().unwrap();
    let tvm = th
        .create_vm(&VmConfig {
            vcpu_num: 2,
            uuid,
            vm_flag: 0,
            cpu_affinity: 3,
            ioreq_page: Some(tpage.clone()),
        })
        .unwrap();
    let mut cv = [0u8; 48];
    cv[4..6].copy_from_slice(&2u16.to_le_bytes());
    cv[8..24].copy_from_slice(&uuid);
    cv[32..40].copy_from_slice(&rpage.addr().to_le_bytes());
    cv[40..48].copy_from_slice(&3u64.to_le_bytes());
    assert_eq!(
        rh.ioctl(ACRN_IOCTL_CREATE_VM, IoctlArg::Bytes(&mut cv)),
        Ok(0)
    );
    assert_eq!(u16::from_le_bytes([cv[0], cv[1]]), tvm.vmid());
    assert_eq!(u16::from_le_bytes([cv[4], cv[5]]), tvm.vcpu_num());

    let to_res = |r: acrn_hsm::Result<()>| r.map(|_| 0i64).map_err(|e| e.errno);
    let r0 = |req: u32| rh.ioctl(req, IoctlArg::None);
    let regs = VcpuRegs {
        vcpu_id: 1,
        cr0: 0x31,
        ..Default::default()
    };
    assert_eq!(
        to_res(tvm.set_vcpu_regs(&regs)),
        rh.ioctl(
            ACRN_IOCTL_SET_VCPU_REGS,
            IoctlArg::Bytes(&mut regs.to_bytes())
        )
    );
    let bad = VcpuRegs { vcpu_id: 5, ..regs };
    assert_eq!(
        to_res(tvm.set_vcpu_regs(&bad)),
        rh.ioctl(
            ACRN_IOCTL_SET_VCPU_REGS,
            IoctlArg::Bytes(&mut bad.to_bytes())
        )
    );
    let mm = MemMap {
        ty: 1,
        attr: 3,
        user_vm_pa: 0xe000_0000,
        vma_base: 0xf000_0000,
        len: 0x1000,
    };
    assert_eq!(
        to_res(tvm.set_memseg(&mm)),
        rh.ioctl(ACRN_IOCTL_SET_MEMSEG, IoctlArg::Bytes(&mut mm.to_bytes()))
    );
    assert_eq!(
        to_res(tvm.unset_memseg(&mm)),
        rh.ioctl(ACRN_IOCTL_UNSET_MEMSEG, IoctlArg::Bytes(&mut mm.to_bytes()))
    );
    assert_eq!(
        to_res(tvm.create_ioreq_client()),
        r0(ACRN_IOCTL_CREATE_IOREQ_CLIENT)
    );
    assert_eq!(
        to_res(tvm.create_ioreq_client()),
        r0(ACRN_IOCTL_CREATE_IOREQ_CLIENT)
    );
    assert_eq!(to_res(tvm.start()), r0(ACRN_IOCTL_START_VM));
    assert_eq!(to_res(tvm.start()), r0(ACRN_IOCTL_START_VM));
    // One request on each side, completed through NOTIFY.
    typed_emu
        .raise_request(tvm.vmid(), 1, ACRN_IOREQ_TYPE_PORTIO, &reqs(0, 0x60, 1, 0))
        .unwrap();
    raw_emu
        .raise_request(tvm.vmid(), 1, ACRN_IOREQ_TYPE_PORTIO, &reqs(0, 0x60, 1, 0))
        .unwrap();
    assert_eq!(
        to_res(tvm.attach_ioreq_client()),
        r0(ACRN_IOCTL_ATTACH_IOREQ_CLIENT)
    );
    let mut n = [0u8; 8];
    n[4] = 1;
    assert_eq!(
        to_res(tvm.notify_request_finish(1)),
        rh.ioctl(ACRN_IOCTL_NOTIFY_REQUEST_FINISH, IoctlArg::Bytes(&mut n))
    );
    assert_eq!(to_res(tvm.inject_msi(0xfee0_0000, 0x30)), {
        let mut m = [0u8; 16];
        m[0..8].copy_from_slice(&0xfee0_0000u64.to_le_bytes());
        m[8..16].copy_from_slice(&0x30u64.to_le_bytes());
        rh.ioctl(ACRN_IOCTL_INJECT_MSI, IoctlArg::Bytes(&mut m))
    });
    assert_eq!(
        to_res(tvm.set_irqline(4, 1)),
        rh.ioctl(ACRN_IOCTL_SET_IRQLINE, IoctlArg::Value(4 | (1 << 32)))
    );
    assert_eq!(typed_emu.interrupts(), raw_emu.interrupts());
    assert_eq!(tpage.to_vec(), rpage.to_vec(), "same slot page");
    assert_eq!(to_res(tvm.reset()), r0(ACRN_IOCTL_RESET_VM));
    assert_eq!(to_res(tvm.pause()), r0(ACRN_IOCTL_PAUSE_VM));
    assert_eq!(to_res(tvm.clear_vm_ioreq()), r0(ACRN_IOCTL_CLEAR_VM_IOREQ));
    assert_eq!(
        to_res(tvm.destroy_ioreq_client()),
        r0(ACRN_IOCTL_DESTROY_IOREQ_CLIENT)
    );
    assert_eq!(to_res(tvm.reset()), r0(ACRN_IOCTL_RESET_VM));
    assert_eq!(to_res(tvm.destroy()), r0(ACRN_IOCTL_DESTROY_VM));
    assert_eq!(to_res(tvm.start()), r0(ACRN_IOCTL_START_VM));
    assert_eq!(tpage.to_vec(), rpage.to_vec());
}

#[test]
fn interrupts_are_recorded() {
    let (emu, _hsm, vm) = vm_with(1, 0);
    vm.inject_msi(0xfee0_1000, 0x41).unwrap();
    vm.set_irqline(9, 2).unwrap();
    // IRQFD: a signal on the eventfd injects its MSI.
    // SAFETY: creates an eventfd closed at the end of the test.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    vm.irqfd(&IrqFd {
        fd: efd,
        flags: 0,
        msi_addr: 0xfee0_0000,
        msi_data: 0x22,
    })
    .unwrap();
    assert_eq!(
        vm.irqfd(&IrqFd {
            fd: efd,
            flags: 0,
            msi_addr: 0,
            msi_data: 0
        })
        .unwrap_err()
        .errno,
        Errno::EBUSY
    );
    // acrn_irqfd_config looks at the DEASSIGN bit only: flag 2 is an assign (EBUSY here).
    assert_eq!(
        vm.irqfd(&IrqFd {
            fd: efd,
            flags: 2,
            msi_addr: 0,
            msi_data: 0
        })
        .unwrap_err()
        .errno,
        Errno::EBUSY
    );
    let one = 1u64;
    // SAFETY: writes 8 bytes from a local to the eventfd.
    assert_eq!(unsafe { libc::write(efd, (&raw const one).cast(), 8) }, 8);
    wait_until("irqfd MSI", || emu.interrupts().len() == 3);
    let id = vm.vmid();
    assert_eq!(
        emu.interrupts(),
        vec![
            InterruptEvent::Msi {
                vmid: id,
                addr: 0xfee0_1000,
                data: 0x41
            },
            InterruptEvent::IrqLine {
                vmid: id,
                gsi: 9,
                op: 2
            },
            InterruptEvent::IrqfdMsi {
                vmid: id,
                addr: 0xfee0_0000,
                data: 0x22
            },
        ]
    );
    vm.irqfd(&IrqFd {
        fd: efd,
        flags: 1,
        msi_addr: 0,
        msi_data: 0,
    })
    .unwrap();
    // SAFETY: as above.
    unsafe { libc::write(efd, (&raw const one).cast(), 8) };
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(emu.interrupts().len(), 3, "deassigned: no more injections");
    // VM_INTR_MONITOR: the page must be a user page.
    let page = alloc_page().unwrap();
    assert_eq!(
        vm.backend()
            .ioctl(ACRN_IOCTL_VM_INTR_MONITOR, IoctlArg::Value(page.addr())),
        Ok(0)
    );
    assert_eq!(
        vm.backend()
            .ioctl(ACRN_IOCTL_VM_INTR_MONITOR, IoctlArg::Value(0x1000)),
        Err(Errno::EFAULT)
    );
    // SAFETY: closes the test's eventfd.
    unsafe { libc::close(efd) };
}

#[test]
fn real_device_when_present() {
    let path = acrn_hsm::sys::DEFAULT_PATH;
    if !std::path::Path::new(path).exists() {
        eprintln!(
            "SKIPPED real_device_when_present: {path} does not exist on this machine (no ACRN hypervisor)"
        );
        return;
    }
    let hsm = Hsm::open(path).expect("open the real device");
    // The §3.1 check holds on the real driver too: nothing but CREATE_VM before a VM exists.
    assert_eq!(
        hsm.ioctl(ACRN_IOCTL_START_VM, IoctlArg::None),
        Err(Errno::EINVAL)
    );
    assert_eq!(hsm.ioctl(0xA2FF, IoctlArg::None), Err(Errno::EINVAL));
    let mut short = [0u8; 8];
    assert_eq!(
        hsm.ioctl(ACRN_IOCTL_CREATE_VM, IoctlArg::Bytes(&mut short)),
        Err(Errno::EFAULT)
    );
}

#[test]
fn open_missing_device_keeps_errno() {
    let e = Hsm::open("/nonexistent/acrn_hsm").unwrap_err();
    assert_eq!(e.errno, Errno::ENOENT);
    assert_eq!(e.code(), "ENOENT");
    assert_eq!(e.to_string(), "open: ENOENT (2): No such file or directory");
}
