# The boot sector of `acrn-hsm bench --virtio` (crates/acrn-hsm-tools/src/virtio_blk_bench.rs):
# loaded by SeaBIOS at 0000:7C00 from the virtio-blk disk under test. It runs three phases of
# int 13h AH=42h extended reads (warm-up, throughput, 4 KiB latency), each read timed with
# rdtsc, the TSC deltas (u32) stored at 2000:0000; then dumps "VBLKDUMP" and the deltas to the
# debugcon port 0x402 and writes 0x10 to isa-debug-exit (0xf4); a failed read writes 0x11.
# The parameters at 0x1e0.. are patched by the host. Build (the bytes are in the .rs file):
#   as --32 -o b.o virtio_blk_bench.s && ld -m elf_i386 -Ttext=0x7c00 --oformat binary -o b.bin b.o
        .code16
        .set DAP,   0x0500          # disk address packet (16 bytes)
        .set DRIVE, 0x0510
        .set T0,    0x0514
        .set CNT,   0x0518
        .set IDX,   0x051a
        .set SEC,   0x051c
        .set P_WARM,     0x7de0     # warm-up reads (of P_BIGSEC sectors)
        .set P_BIG,      0x7de2     # throughput reads
        .set P_BIGSEC,   0x7de4     # sectors per throughput read
        .set P_SMALL,    0x7de6     # latency reads
        .set P_SMALLSEC, 0x7de8     # sectors per latency read
        .set P_LBA0,     0x7dec     # first LBA of the region
        .set P_LBAEND,   0x7df0     # end of the region (exclusive)
        .text
        .globl _start
_start:
        cli
        xor %ax, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $0x7c00, %sp
        sti
        cld
        mov %dl, DRIVE
        movw $0, IDX
        movw $0x0010, DAP
        movw $0, DAP+4
        movw $0x1000, DAP+6
        movl $0, DAP+12
        mov P_WARM, %cx
        mov P_BIGSEC, %bx
        call phase
        mov P_BIG, %cx
        mov P_BIGSEC, %bx
        call phase
        mov P_SMALL, %cx
        mov P_SMALLSEC, %bx
        call phase
        mov $0x402, %dx
        mov $magic, %si
        mov $8, %cx
1:      lodsb
        out %al, %dx
        loop 1b
        mov $0x2000, %ax
        mov %ax, %es
        mov IDX, %cx
        xor %si, %si
        jcxz 3f
2:      lodsb %es:(%si), %al
        out %al, %dx
        loop 2b
3:      mov $0x10, %al
        out %al, $0xf4
4:      hlt
        jmp 4b
fail:
        mov $0x11, %al
        out %al, $0xf4
        jmp 4b

# cx reads of bx sectors each, from P_LBA0 on, wrapping at P_LBAEND.
phase:
        jcxz 9f
        mov %cx, CNT
        mov %bx, SEC
        movl P_LBA0, %eax
        movl %eax, DAP+8
5:      mov SEC, %bx
        mov %bx, DAP+2
        rdtsc
        movl %eax, T0
        mov $0x42, %ah
        mov DRIVE, %dl
        mov $DAP, %si
        int $0x13
        jc fail
        rdtsc
        subl T0, %eax
        mov $0x2000, %bx
        mov %bx, %es
        mov IDX, %di
        stosl
        mov %di, IDX
        xor %bx, %bx
        mov %bx, %es
        movzwl SEC, %ebx
        movl DAP+8, %eax
        addl %ebx, %eax
        movl %eax, DAP+8
        addl %eax, %ebx
        cmpl P_LBAEND, %ebx
        jbe 6f
        movl P_LBA0, %eax
        movl %eax, DAP+8
6:      decw CNT
        jnz 5b
9:      ret

magic:  .ascii "VBLKDUMP"
        .org 0x1e0
        .word 4, 480, 64, 1000, 8, 0
        .long 2048, 32768
        .org 0x1fe
        .byte 0x55, 0xaa
