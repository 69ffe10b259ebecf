/* Entry stubs for the exception vectors 0-31 and the external-interrupt
 * vectors 32-63 (all land in exception_dispatch with the same frame), and
 * probe_call(), which runs a function that is expected to fault and resumes
 * after it. */
#include "boot.h"

        .section .text, "ax"
        .code64

/* Vectors for which the CPU pushes an error code (only exceptions do; an
 * external interrupt never pushes one, whatever its vector). */
#define HAS_ERROR(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)

        .macro stub vector
        .balign 16
isr_\vector:
        .if !HAS_ERROR(\vector)
        pushq $0
        .endif
        pushq $\vector
        jmp isr_common
        .endm

        .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
        stub \v
        .endr

isr_common:
        pushq %rax
        pushq %rbx
        pushq %rcx
        pushq %rdx
        pushq %rsi
        pushq %rdi
        pushq %rbp
        pushq %r8
        pushq %r9
        pushq %r10
        pushq %r11
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        movq %rsp, %rdi                 /* struct exception_frame* */
        cld
        call exception_dispatch
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %r11
        popq %r10
        popq %r9
        popq %r8
        popq %rbp
        popq %rdi
        popq %rsi
        popq %rdx
        popq %rcx
        popq %rbx
        popq %rax
        addq $16, %rsp                  /* vector, error code */
        iretq

/* bool probe_call(void (*fn)(void)): 0 if fn returned, 1 if the exception
 * handler sent it to probe_resume. */
        .globl probe_call
probe_call:
        pushq %rbx
        pushq %rbp
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        subq $8, %rsp
        movq %rsp, probe_saved_rsp(%rip)
        call *%rdi
        xorl %eax, %eax
        jmp 1f
        .globl probe_resume
probe_resume:
        movq probe_saved_rsp(%rip), %rsp
        movl $1, %eax
1:      addq $8, %rsp
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %rbp
        popq %rbx
        ret

        .section .rodata, "a"
        .balign 8
        .globl isr_stubs
isr_stubs:
        .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
        .quad isr_\v
        .endr

        .section .bss, "aw", @nobits
        .balign 8
        .globl probe_saved_rsp
probe_saved_rsp:
        .skip 8
