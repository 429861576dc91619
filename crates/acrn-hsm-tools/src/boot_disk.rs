//! A test disk for virtio-blk backends (native or TypeScript): its boot sector, started by
//! SeaBIOS from the disk, reads sectors 1–2 with int 13h AH=02h and sector 3 with AH=42h
//! (extended read) through the BIOS, so through the firmware's virtio-blk driver and the device
//! under test, prints the NUL-terminated text of each ([`SECTOR_TEXTS`], one per line) on COM1
//! and writes 0x10 to isa-debug-exit (status 33; an int 13h failure: 0x11, status 35).

/// The boot sector's code, loaded by the BIOS at 0000:7C00 (16-bit real mode, DL = boot drive).
#[rustfmt::skip]
pub const BOOT_SECTOR: &[u8] = &[
    0xfa,                   // 00 cli
    0x31, 0xc0,             // 01 xor ax, ax
    0x8e, 0xd8,             // 03 mov ds, ax
    0x8e, 0xc0,             // 05 mov es, ax
    0x8e, 0xd0,             // 07 mov ss, ax
    0xbc, 0x00, 0x7c,       // 09 mov sp, 0x7c00
    0xfb,                   // 0c sti
    0xb8, 0x02, 0x02,       // 0d mov ax, 0x0202    ; AH=02h read, AL=2 sectors
    0xb9, 0x02, 0x00,       // 10 mov cx, 0x0002    ; CH=0 cylinder, CL=2 (CHS sector 2 = LBA 1)
    0xb6, 0x00,             // 13 mov dh, 0         ; head 0 (DL: the BIOS's boot drive)
    0xbb, 0x00, 0x80,       // 15 mov bx, 0x8000    ; ES:BX = 0000:8000
    0xcd, 0x13,             // 18 int 13h
    0x72, 0x22,             // 1a jc fail (0x3e)
    0xbe, 0x50, 0x7c,       // 1c mov si, 0x7c50    ; DS:SI = the disk address packet
    0xb4, 0x42,             // 1f mov ah, 42h       ; extended read
    0xcd, 0x13,             // 21 int 13h
    0x72, 0x19,             // 23 jc fail (0x3e)
    0xbe, 0x00, 0x80,       // 25 mov si, 0x8000    ; sector 1
    0xe8, 0x19, 0x00,       // 28 call puts (0x44)
    0xbe, 0x00, 0x82,       // 2b mov si, 0x8200    ; sector 2
    0xe8, 0x13, 0x00,       // 2e call puts
    0xbe, 0x00, 0x90,       // 31 mov si, 0x9000    ; sector 3
    0xe8, 0x0d, 0x00,       // 34 call puts
    0xb0, 0x10,             // 37 mov al, 0x10
    0xe6, 0xf4,             // 39 out 0xf4, al      ; isa-debug-exit: (0x10 << 1) | 1 = 33
    0xf4,                   // 3b hang: hlt
    0xeb, 0xfd,             // 3c jmp hang
    0xb0, 0x11,             // 3e fail: mov al, 0x11
    0xe6, 0xf4,             // 40 out 0xf4, al      ; status 35: int 13h failed
    0xeb, 0xf7,             // 42 jmp hang
    0xac,                   // 44 puts: lodsb
    0x84, 0xc0,             // 45 test al, al
    0x74, 0x06,             // 47 jz done (0x4f)
    0xba, 0xf8, 0x03,       // 49 mov dx, 0x3f8     ; COM1 THR
    0xee,                   // 4c out dx, al
    0xeb, 0xf5,             // 4d jmp puts
    0xc3,                   // 4f done: ret
    // 50: disk address packet: size 16, 1 sector, to 0000:9000, LBA 3.
    0x10, 0x00, 0x01, 0x00, 0x00, 0x90, 0x00, 0x00,
    0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// What the boot sector writes to isa-debug-exit when every read succeeded (the run's status is
/// `(EXIT_VALUE << 1) | 1`, 33; a failed read writes 0x11).
pub const EXIT_VALUE: u32 = 0x10;

/// The texts of sectors 1, 2 and 3, in the order the boot sector prints them.
pub const SECTOR_TEXTS: [&str; 3] = [
    "<virtio sector 1: CHS read>",
    "<virtio sector 2: second of the AH=02h pair>",
    "<virtio sector 3: AH=42h extended read>",
];

/// The disk: 1 MiB (SeaBIOS wants at least 504 KiB), the boot sector with its 0x55AA
/// signature, then the three sectors, each its text, a line feed, a NUL and non-zero filler.
pub fn image() -> Vec<u8> {
    let mut img = vec![0u8; 1 << 20];
    img[..BOOT_SECTOR.len()].copy_from_slice(BOOT_SECTOR);
    img[510] = 0x55;
    img[511] = 0xaa;
    for (k, m) in SECTOR_TEXTS.iter().enumerate() {
        let at = 512 * (k + 1);
        img[at..at + m.len()].copy_from_slice(m.as_bytes());
        img[at + m.len()] = b'\n';
        // The rest of the sector is not printed (NUL-terminated) but is not zero either.
        for (i, b) in img[at + m.len() + 2..at + 512].iter_mut().enumerate() {
            *b = 0x80 | (i as u8);
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_has_the_boot_signature_and_the_texts() {
        let img = image();
        assert_eq!(&img[510..512], &[0x55, 0xaa]);
        assert!(BOOT_SECTOR.len() <= 446);
        // 0x37: mov al, EXIT_VALUE; out 0xf4, al.
        assert_eq!(
            &BOOT_SECTOR[0x37..0x3b],
            &[0xb0, EXIT_VALUE as u8, 0xe6, 0xf4]
        );
        for (k, m) in SECTOR_TEXTS.iter().enumerate() {
            let at = 512 * (k + 1);
            assert_eq!(&img[at..at + m.len()], m.as_bytes());
            assert_eq!(img[at + m.len() + 1], 0, "NUL-terminated");
        }
    }
}
