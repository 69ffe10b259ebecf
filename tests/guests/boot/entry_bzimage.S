/* The protected-mode part of a bzImage. Offset 0 is code32_start, the 32-bit
 * entry of the Linux boot protocol (ESI = boot_params, CS = 0x10, DS = 0x18);
 * the real-mode setup (boot/bzimage_setup.S) jumps there under QEMU. Offset
 * 0x200 is the 64-bit entry (RSI = boot_params) that hostvisor uses. */
#include "boot.h"

        .section .text.entry, "ax"
        .code32
        .globl bzimage_start32
bzimage_start32:
        capture_entry_state_32          /* keeps ESI */
        movl $FORMAT_BZIMAGE, %ebx
        xorl %ebp, %ebp
        jmp long_mode_from_32

        .org 0x200
        .code64
        .globl bzimage_start64
bzimage_start64:
        capture_entry_state_64
        movl $FORMAT_BZIMAGE, %edi
        xorl %edx, %edx
        jmp start64
