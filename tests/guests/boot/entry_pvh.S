/* PVH entry: XEN_ELFNOTE_PHYS32_ENTRY names a 32-bit protected-mode entry,
 * paging off, EBX = struct hvm_start_info. */
#include "boot.h"

        .section .text.entry, "ax"
        .code32
        .globl pvh_start32
pvh_start32:
        movl %ebx, %esi
        capture_entry_state_32
        movl $FORMAT_PVH, %ebx
        xorl %ebp, %ebp
        jmp long_mode_from_32

        /* The note's descriptor is a 32-bit physical address, as in Linux. The
         * linker script follows the note segment with zero bytes so a loader
         * that reads the field as 64 bits still gets the right value. */
        .section .note.Xen, "a", @note
        .balign 4
        .long 4                         /* namesz: "Xen" + NUL */
        .long 4                         /* descsz */
        .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long pvh_start32
