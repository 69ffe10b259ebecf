/* Multiboot (v1) entry. The header uses the a.out kludge (flag 16) so the
 * loader needs no ELF parsing: the image is loaded as a flat binary. Entered
 * in 32-bit protected mode, paging off, EAX = 0x2BADB002, EBX = multiboot_info. */
#include "boot.h"

#define MB_MAGIC 0x1badb002
#define MB_FLAGS ((1 << 0) | (1 << 1) | (1 << 16)) /* page-aligned modules, memory info, a.out kludge */

        .section .text.entry, "ax"
        .code32
        .balign 4
multiboot_header:
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)
        .long multiboot_header          /* header_addr */
        .long __image_start             /* load_addr */
        .long __data_end                /* load_end_addr */
        .long __image_end               /* bss_end_addr */
        .long multiboot_start32         /* entry_addr */

        .globl multiboot_start32
multiboot_start32:
        movl %eax, %ebp
        movl %ebx, %esi
        capture_entry_state_32
        movl $FORMAT_MULTIBOOT, %ebx
        jmp long_mode_from_32
