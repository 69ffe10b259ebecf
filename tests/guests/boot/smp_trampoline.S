/* The AP start-up trampoline. runtime/ap_start.c copies it to TRAMPOLINE_BASE; a STARTUP
 * IPI starts the AP there in real mode (CS = TRAMPOLINE_BASE >> 4, IP = 0).
 * It enters protected mode, then long mode on the BSP's page tables, and
 * jumps to the 64-bit entry with its own stack, both taken from the data
 * slots at its end, which the BSP fills before the copy. */
#define TRAMPOLINE_BASE 0x40000
#define AT(label) ((label) - smp_trampoline_start + TRAMPOLINE_BASE)
#define OFF(label) ((label) - smp_trampoline_start)

        /* .data: the BSP fills the slots before copying. */
        .section .data, "aw"
        .balign 16
        .globl smp_trampoline_start, smp_trampoline_end
        .globl smp_trampoline_cr3, smp_trampoline_stack, smp_trampoline_entry
smp_trampoline_start:
        .code16
        cli
        cld
        movw %cs, %ax
        movw %ax, %ds
        lgdtl OFF(gdt_descriptor)
        movl %cr0, %eax
        orl $1, %eax
        movl %eax, %cr0
        ljmpl $0x18, $AT(protected_mode)

        .code32
protected_mode:
        movl $0x10, %eax
        movl %eax, %ds
        movl %eax, %es
        movl %eax, %ss
        movl %cr4, %eax
        orl $0x20, %eax                 /* PAE */
        movl %eax, %cr4
        movl AT(smp_trampoline_cr3), %eax
        movl %eax, %cr3
        movl $0xc0000080, %ecx          /* EFER.LME */
        rdmsr
        orl $0x100, %eax
        wrmsr
        movl %cr0, %eax
        orl $0x80000000, %eax           /* PG */
        movl %eax, %cr0
        ljmp $0x08, $AT(long_mode)

        .code64
long_mode:
        movq AT(smp_trampoline_stack), %rsp
        movq AT(smp_trampoline_entry), %rax
        jmpq *%rax

        .balign 8
gdt:
        .quad 0
        .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
        .quad 0x00cf92000000ffff        /* 0x10: flat data */
        .quad 0x00cf9a000000ffff        /* 0x18: flat 32-bit code */
gdt_end:
        .word 0
gdt_descriptor:
        .word gdt_end - gdt - 1
        .long AT(gdt)
        .balign 8
smp_trampoline_cr3:
        .quad 0
smp_trampoline_stack:
        .quad 0
smp_trampoline_entry:
        .quad 0
smp_trampoline_end:
