/* The way every test kernel reaches runtime_start() in 64-bit mode:
 *  - long_mode_from_32: for the protocols that start in 32-bit protected mode
 *    with paging off (PVH, multiboot, the bzImage 32-bit entry). Builds an
 *    identity map of the low 4 GiB with 2 MiB pages and enables long mode.
 *    In: EBX = format, ESI = boot information pointer, EBP = magic.
 *  - start64: for the protocols that start in 64-bit mode on the loader's
 *    page tables. In: EDI = format, RSI = boot information pointer, RDX = magic.
 * Both switch to the kernel's own GDT and stack and zero .bss. Instruction
 * counts matter (some hosts run only a few million guest instructions a
 * second), so the page tables take one store per 2 MiB. */
#include "boot.h"

        .section .text, "ax"
        .code32
        .globl entry_scratch_stack_top
        .globl long_mode_from_32
long_mode_from_32:
        cli
        cld
        /* .bss holds the page tables and the stack: zero it first. */
        movl $__bss_start, %edi
        movl $__bss_end, %ecx
        subl %edi, %ecx
        shrl $2, %ecx
        xorl %eax, %eax
        rep stosl

        /* PML4[0] -> PDPT; PDPT[0..3] -> four PDs; PD entries map 2 MiB each. */
        movl $boot_pdpt + 3, boot_pml4
        movl $boot_pd + 3, boot_pdpt
        movl $boot_pd + 0x1000 + 3, boot_pdpt + 8
        movl $boot_pd + 0x2000 + 3, boot_pdpt + 16
        movl $boot_pd + 0x3000 + 3, boot_pdpt + 24
        movl $0x83, %eax                /* present, writable, 2 MiB page */
        movl $boot_pd, %edi
        movl $2048, %ecx
1:      movl %eax, (%edi)
        addl $0x200000, %eax
        addl $8, %edi
        decl %ecx
        jnz 1b

        lgdt gdt_descriptor
        movl %cr4, %eax
        orl $0x20, %eax                 /* CR4.PAE */
        movl %eax, %cr4
        movl $boot_pml4, %eax
        movl %eax, %cr3
        movl $0xc0000080, %ecx          /* IA32_EFER */
        rdmsr
        orl $0x100, %eax                /* LME */
        wrmsr
        movl %cr0, %eax
        orl $0x80000001, %eax           /* PG | PE */
        movl %eax, %cr0
        ljmp $KERNEL_CS, $1f

        .code64
1:      movl $KERNEL_DS, %eax
        movl %eax, %ds
        movl %eax, %es
        movl %eax, %ss
        movl %eax, %fs
        movl %eax, %gs
        /* The upper halves of the registers are undefined after the switch. */
        movl %ebx, %edi
        movl %esi, %esi
        movl %ebp, %edx
        leaq stack_top(%rip), %rsp
        xorl %ebp, %ebp
        call runtime_start
        jmp halt

        .globl start64
start64:
        cli
        cld
        movq %rdi, %r12
        movq %rsi, %r13
        movq %rdx, %r14
        leaq stack_top(%rip), %rsp
        lgdt gdt_descriptor(%rip)
        movl $KERNEL_DS, %eax
        movl %eax, %ds
        movl %eax, %es
        movl %eax, %ss
        movl %eax, %fs
        movl %eax, %gs
        pushq $KERNEL_CS
        leaq 2f(%rip), %rax
        pushq %rax
        lretq
2:      leaq __bss_start(%rip), %rdi
        leaq __bss_end(%rip), %rcx
        subq %rdi, %rcx
        shrq $3, %rcx
        xorl %eax, %eax
        rep stosq
        leaq stack_top(%rip), %rsp
        movl %r12d, %edi
        movq %r13, %rsi
        movq %r14, %rdx
        xorl %ebp, %ebp
        call runtime_start
halt:   cli
        hlt
        jmp halt

        .section .rodata, "a"
        .balign 16
gdt:
        .quad 0
        .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
        .quad 0x00cf92000000ffff        /* 0x10: flat data */
gdt_end:
        .balign 8
        .word 0
gdt_descriptor:
        .word gdt_end - gdt - 1
        .quad gdt

        /* In .data, not .bss: the stubs fill it before .bss is zeroed. */
        .section .data, "aw"
        .balign 8
        .globl boot_entry_state
boot_entry_state:
        .skip 72
        .balign 16
        .skip 64
entry_scratch_stack_top:

        /* A note every ELF image carries, so loaders are exercised on a note
         * segment with more than the one note they look for. */
        .section .note.hvtest, "a", @note
        .balign 4
        .long 7                         /* namesz: "HVTEST" + NUL */
        .long 4                         /* descsz */
        .long 0x4856                    /* type: private */
        .asciz "HVTEST"
        .balign 4
        .long 1

        .section .bss, "aw", @nobits
        .balign 4096
        .globl boot_pml4
boot_pml4:
        .skip 4096
boot_pdpt:
        .skip 4096
boot_pd:
        .skip 4 * 4096
stack:
        .skip STACK_SIZE
stack_top:
