/* Constants shared by the assembly entry stubs and the C runtime. */
#ifndef HOSTVISOR_TESTS_GUESTS_BOOT_H
#define HOSTVISOR_TESTS_GUESTS_BOOT_H

#define FORMAT_BZIMAGE 1
#define FORMAT_PVH 2
#define FORMAT_MULTIBOOT 3
#define FORMAT_ELF64 4

#define KERNEL_CS 0x08
#define KERNEL_DS 0x10

#define STACK_SIZE 0x4000

/* struct entry_state (runtime/hvtest.h): the CPU state the loader handed
 * over, captured by the entry stubs before they change anything. */
#define ENTRY_CS 0
#define ENTRY_DS 8
#define ENTRY_ES 16
#define ENTRY_SS 24
#define ENTRY_RFLAGS 32
#define ENTRY_CR0 40
#define ENTRY_CR3 48
#define ENTRY_CR4 56
#define ENTRY_EFER 64

#ifdef __ASSEMBLER__
/* 32-bit form. Clobbers EAX, ECX, EDX and ESP (protocols that enter in 32-bit
 * mode give no stack); keep the entry registers elsewhere first. */
.macro capture_entry_state_32
        movl $entry_scratch_stack_top, %esp
        pushfl
        popl boot_entry_state + ENTRY_RFLAGS
        movw %cs, boot_entry_state + ENTRY_CS
        movw %ds, boot_entry_state + ENTRY_DS
        movw %es, boot_entry_state + ENTRY_ES
        movw %ss, boot_entry_state + ENTRY_SS
        movl %cr0, %eax
        movl %eax, boot_entry_state + ENTRY_CR0
        movl %cr3, %eax
        movl %eax, boot_entry_state + ENTRY_CR3
        movl %cr4, %eax
        movl %eax, boot_entry_state + ENTRY_CR4
        movl $0xc0000080, %ecx
        rdmsr
        movl %eax, boot_entry_state + ENTRY_EFER
.endm

/* 64-bit form. Clobbers RAX, RCX, RDX and RSP. */
.macro capture_entry_state_64
        leaq entry_scratch_stack_top(%rip), %rsp
        pushfq
        popq boot_entry_state + ENTRY_RFLAGS(%rip)
        movw %cs, boot_entry_state + ENTRY_CS(%rip)
        movw %ds, boot_entry_state + ENTRY_DS(%rip)
        movw %es, boot_entry_state + ENTRY_ES(%rip)
        movw %ss, boot_entry_state + ENTRY_SS(%rip)
        movq %cr0, %rax
        movq %rax, boot_entry_state + ENTRY_CR0(%rip)
        movq %cr3, %rax
        movq %rax, boot_entry_state + ENTRY_CR3(%rip)
        movq %cr4, %rax
        movq %rax, boot_entry_state + ENTRY_CR4(%rip)
        movl $0xc0000080, %ecx
        rdmsr
        movl %eax, boot_entry_state + ENTRY_EFER(%rip)
        movl %edx, boot_entry_state + ENTRY_EFER + 4(%rip)
.endm
#endif

#endif
