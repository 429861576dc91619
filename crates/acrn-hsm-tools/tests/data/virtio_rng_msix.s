# The source of RNG_MSIX_CODE in kvm_seabios_virtio.rs (GNU as, as virtio_rng_irq.s).
# Boot sector: drives the virtio-rng function at 00:04.0 through the virtio PCI configuration
# access capability (at 0x84 in its configuration space), so from real mode with port I/O only,
# and waits for its MSI-X interrupt (vector 0x40, through the LAPIC).
.code16
.set CFG, 0x80002000          # conf1 address of 00:04.0
.set DESC, 0x6000
.set AVAIL, 0x6100
.set USED, 0x6200
.set BUF, 0x6400
.org 0
start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %sp
    cld
    # Zero the rings and the buffer: 0x6000..0x6500.
    mov $DESC, %di
    mov $0x280, %cx
    rep stosw
    # The descriptor: BUF, 16 bytes, device-writable.
    movw $BUF, DESC
    movw $16, DESC + 8
    movw $2, DESC + 12
    # IVT entry of vector 0x40: 0000:handler.
    movw $0x7c00 + handler, 0x100
    movw $0, 0x102
    # MSI-X table entry 0 (BAR 4 + 0x4000): address 0xfee00000 (APIC 0), data 0x40, unmasked.
    mov $0x4000, %ebx
    mov $4, %ecx
    mov $0xfee00000, %eax
    call bar_write
    mov $0x4004, %bx
    xor %eax, %eax
    call bar_write
    mov $0x4008, %bx
    mov $0x40, %al
    call bar_write
    mov $0x400c, %bx
    xor %eax, %eax
    call bar_write
    # MSI-X enable: bit 15 of the message control (configuration byte 0x9b).
    mov $CFG + 0x98, %eax
    call cfg_addr
    mov $0xcfc, %dx
    mov $0x80000000, %eax
    out %eax, %dx
    # The driver's initialisation, each register through the window (ebx offset, ecx length, eax value).
    xor %eax, %eax
    mov $0x14, %ebx
    mov $1, %ecx
    call bar_write            # status = 0: reset
    mov $3, %al
    call bar_write            # ACKNOWLEDGE | DRIVER
    mov $4, %cl
    mov $0x08, %bl
    mov $1, %al
    call bar_write            # driver_feature_select = 1
    mov $0x0c, %bl
    call bar_write            # driver_feature (high) = VERSION_1
    mov $1, %cl
    mov $0x14, %bl
    mov $0xb, %al
    call bar_write            # | FEATURES_OK
    call bar_read
    test $8, %al
    jz fail
    mov $2, %cl
    mov $0x16, %bl
    xor %eax, %eax
    call bar_write            # queue_select = 0
    mov $0x18, %bl
    mov $4, %al
    call bar_write            # queue_size = 4
    mov $0x1a, %bl
    xor %eax, %eax
    call bar_write            # queue_msix_vector = 0
    mov $4, %cl
    mov $0x20, %bl
    mov $DESC, %ax
    call bar_write            # queue_desc
    mov $0x28, %bl
    mov $AVAIL, %ax
    call bar_write            # queue_driver
    mov $0x30, %bl
    mov $USED, %ax
    call bar_write            # queue_device
    mov $2, %cl
    mov $0x1c, %bl
    mov $1, %ax
    call bar_write            # queue_enable = 1
    mov $1, %cl
    mov $0x14, %bl
    mov $0xf, %al
    call bar_write            # | DRIVER_OK
    # Publish descriptor 0 (ring[0] is already 0), then notify queue 0.
    movw $1, AVAIL + 2
    mov $2, %cl
    mov $0x3000, %bx
    xor %eax, %eax
    call bar_write
wait:
    cli
    cmpb $0, 0x7c00 + flag
    jne woke
    sti
    hlt
    jmp wait
woke:
    # The used element: id 0, len 16; the buffer is not all zeroes; ISR said "queue".
    cmpw $1, USED + 2
    jne fail
    cmpw $16, USED + 8
    jne fail
    cmpb $0, 0x7c00 + isr
    jne fail
    mov BUF, %eax
    or BUF + 4, %eax
    or BUF + 8, %eax
    or BUF + 12, %eax
    jz fail
    mov $0x7c00 + ok, %si
    mov $0x3f8, %dx
puts:
    lodsb
    test %al, %al
    jz exit
    out %al, %dx
    jmp puts
exit:
    mov $0x10, %al
    out %al, $0xf4
hang:
    hlt
    jmp hang
fail:
    mov $0x12, %al
    out %al, $0xf4
    jmp hang

# The interrupt: read the ISR (0: with MSI-X the queue interrupt sets no ISR bit). No LAPIC EOI
# (its registers are above 1 MiB): one interrupt is all this test takes.
handler:
    pushal
    mov $0x1000, %ebx
    mov $1, %ecx
    call bar_read
    mov %al, 0x7c00 + isr
    movb $1, 0x7c00 + flag
    popal
    iret

# conf1 address register = eax.
cfg_addr:
    mov $0xcf8, %dx
    out %eax, %dx
    ret
# The window: bar 4, offset ebx, length ecx; leaves the data register selected.
window:
    push %eax
    mov $CFG + 0x88, %eax
    call cfg_addr
    mov $0xcfc, %dx
    mov $4, %eax
    out %eax, %dx
    mov $CFG + 0x8c, %eax
    call cfg_addr
    mov $0xcfc, %dx
    mov %ebx, %eax
    out %eax, %dx
    mov $CFG + 0x90, %eax
    call cfg_addr
    mov $0xcfc, %dx
    mov %ecx, %eax
    out %eax, %dx
    mov $CFG + 0x94, %eax
    call cfg_addr
    mov $0xcfc, %dx
    pop %eax
    ret
bar_write:
    call window
    out %eax, %dx
    ret
bar_read:
    call window
    in %dx, %eax
    ret
flag: .byte 0
isr: .byte 0
ok: .asciz "virtio-rng MSI-X: vector 0x40, ISR 0\n"
.org 510
.byte 0x55, 0xaa
