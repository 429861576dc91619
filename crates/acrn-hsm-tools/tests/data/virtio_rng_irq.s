# The source of RNG_IRQ_CODE in kvm_seabios_virtio.rs (GNU as: as --32 -o x.o virtio_rng_irq.s &&
# objcopy -O binary x.o x.bin). Loaded by SeaBIOS at 0000:7C00.
# Boot sector: drives the virtio-rng function at 00:04.0 through the virtio PCI configuration
# access capability (at 0x84 in its configuration space), so from real mode with port I/O only,
# and waits for its INTx interrupt.
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
    # The interrupt line SeaBIOS assigned: IRQ 8..15 only (slave PIC).
    mov $CFG + 0x3c, %eax
    call cfg_addr
    mov $0xcfc, %dx
    in %dx, %al
    sub $8, %al
    jb fail
    cmp $8, %al
    jae fail
    mov %al, %cl              # cl = irq - 8
    # IVT entry of vector 0x70 + (irq - 8): 0000:handler.
    movzx %al, %bx
    add $0x70, %bx
    shl $2, %bx
    movw $0x7c00 + handler, (%bx)
    movw $0, 2(%bx)
    # Unmask the line on the slave and the cascade (IRQ 2) on the master.
    mov $1, %bl
    shl %cl, %bl
    not %bl
    in $0xa1, %al
    and %bl, %al
    out %al, $0xa1
    in $0x21, %al
    and $0xfb, %al
    out %al, $0x21
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
    cmpb $1, 0x7c00 + isr
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

# The interrupt: read (and so clear) the ISR, EOI both PICs.
handler:
    pushal
    mov $0x1000, %ebx
    mov $1, %ecx
    call bar_read
    mov %al, 0x7c00 + isr
    movb $1, 0x7c00 + flag
    mov $0x20, %al
    out %al, $0xa0
    out %al, $0x20
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
ok: .asciz "virtio-rng interrupt: ISR 1, 16 random bytes\n"
.org 510
.byte 0x55, 0xaa
