/* Plain ELF64 entry: the loader starts e_entry in 64-bit mode on its own
 * identity map of the low 4 GiB; like a Linux vmlinux, RSI is expected to hold
 * the boot_params (zero page). */
#include "boot.h"

        .section .text.entry, "ax"
        .code64
        .globl elf64_start
elf64_start:
        capture_entry_state_64
        movl $FORMAT_ELF64, %edi
        xorl %edx, %edx
        jmp start64
