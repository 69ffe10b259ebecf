/* The real-mode setup sectors of the test bzImages. hostvisor enters the
 * 64-bit entry directly and never runs this; it is here so the same images
 * also boot in QEMU (an oracle), whose loader jumps to setup + 0x200 in real
 * mode with CS = setup segment + 0x20 and DS = ES = SS = setup segment.
 *
 * Like Linux's setup it builds a separate boot_params (the loader's copy at
 * the start of the setup segment would be overwritten by the e820 table,
 * which reaches 0xCD0), fills the e820 table from INT 15h/E820h, enables A20,
 * enters 32-bit protected mode with the boot protocol's GDT (CS 0x10,
 * DS = ES = SS = 0x18) and jumps to code32_start with ESI = boot_params.
 *
 * Offsets 0x1F1-0x26F are the setup header, written by tools/mkbzimage; the
 * only part of it that lives here is the 2-byte jump at 0x200. */

#define BOOT_PARAMS 0x1000               /* our boot_params, inside the setup segment */
#define E820_ENTRIES 0x1e8
#define E820_TABLE 0x2d0
#define E820_MAX 128
#define HDR_START 0x1f1
#define HDR_END 0x270
#define CODE32_START 0x214
#define SMAP 0x534d4150

        .code16
        .section .text, "ax"
        .globl setup_begin
setup_begin:
        .org 0x200
        jmp setup_main                  /* the header's "jump" field */

        .org HDR_END
setup_main:
        cli
        cld
        movw %cs, %ax
        subw $0x20, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw $0x7ff0, %sp

        /* Fast A20 through the system control port. */
        inb $0x92, %al
        orb $2, %al
        andb $0xfe, %al
        outb %al, $0x92

        /* boot_params = zeros + the setup header as the loader left it. */
        movw $BOOT_PARAMS, %di
        movw $2048, %cx
        xorw %ax, %ax
        rep stosw
        movw $HDR_START, %si
        movw $BOOT_PARAMS + HDR_START, %di
        movw $HDR_END - HDR_START, %cx
        rep movsb

        /* e820 map from the BIOS. */
        xorl %ebx, %ebx
        movw $BOOT_PARAMS + E820_TABLE, %di
1:      movl $0xe820, %eax
        movl $20, %ecx
        movl $SMAP, %edx
        int $0x15
        jc 2f
        cmpl $SMAP, %eax
        jne 2f
        incb BOOT_PARAMS + E820_ENTRIES
        addw $20, %di
        cmpb $E820_MAX, BOOT_PARAMS + E820_ENTRIES
        jae 2f
        testl %ebx, %ebx
        jnz 1b
2:
        /* Linear addresses: setup base in EBP, boot_params in ESI. */
        xorl %ebp, %ebp
        movw %ds, %bp
        shll $4, %ebp
        leal gdt(%ebp), %eax
        movl %eax, gdt_descriptor + 2
        leal BOOT_PARAMS(%ebp), %esi
        leal protected_mode(%ebp), %eax
        movl %eax, far_target
        movl CODE32_START, %edi

        lgdtl gdt_descriptor
        movl %cr0, %eax
        orl $1, %eax
        movl %eax, %cr0
        /* DS still has its real-mode base until reloaded, so far_target is
         * read from the setup segment. */
        ljmpl *far_target

        /* The state the 32-bit boot protocol promises: flat CS 0x10 and
         * DS = ES = SS = 0x18, ESI = boot_params. */
        .code32
protected_mode:
        movl $0x18, %eax
        movl %eax, %ds
        movl %eax, %es
        movl %eax, %ss
        movl %eax, %fs
        movl %eax, %gs
        leal 0x7ff0(%ebp), %esp
        jmp *%edi

        .balign 8
gdt:
        .quad 0
        .quad 0
        .quad 0x00cf9a000000ffff        /* 0x10: __BOOT_CS, flat 32-bit code */
        .quad 0x00cf92000000ffff        /* 0x18: __BOOT_DS, flat data */
gdt_end:
gdt_descriptor:
        .word gdt_end - gdt - 1
        .long 0
far_target:
        .long 0
        .word 0x10
