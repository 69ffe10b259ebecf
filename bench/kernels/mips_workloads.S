/* The benchmark loops of the MIPS kernel, in assembly so that every loop
 * iteration retires a fixed, known number of instructions (kept in step with
 * mips_workloads.h). Each function is
 *     uint64_t bench_<name>(uint64_t iterations, uint64_t arg)
 * and returns a checksum of what it computed, so a wrong result shows up as a
 * mismatch between the two emulators instead of passing silently.
 * Shape of every function: a prologue, then `test; jz` (so zero iterations
 * never enter the loop), the loop, an epilogue. The prologue and the epilogue
 * run whatever the count, so a run with N iterations retires exactly
 * N * instructions-per-iteration more than a run with zero. */

        .section .text, "ax"
        .code64

/* Integer ALU: 10 instructions per iteration (add, xor, rol, imul, lea, sub,
 * and, or, dec, jnz), dependencies through several registers. */
        .globl bench_alu
bench_alu:
        push %rbx
        movq %rdi, %rcx
        movq $0x9e3779b97f4a7c15, %rax
        movq %rsi, %rbx
        movq $1, %rdx
        movq $3, %r8
        movq $5, %r9
        movq $7, %r10
        test %rcx, %rcx
        jz 2f
1:      addq %rcx, %rax
        xorq %rax, %rbx
        rolq $7, %rdx
        imulq %rbx, %rdx
        leaq 5(%rax,%rbx,2), %r8
        subq %r8, %r9
        andq %r9, %r10
        orq %rdx, %r10
        decq %rcx
        jnz 1b
2:      addq %rbx, %rax
        addq %rdx, %rax
        addq %r9, %rax
        addq %r10, %rax
        pop %rbx
        ret

/* Pointer chasing: arg is the first node of a cyclic list of 64-byte nodes
 * (next pointer at +0, a value at +8, a scratch slot at +16). 5 instructions
 * per iteration: two loads, a store, dec, jnz. */
        .globl bench_chase
bench_chase:
        movq %rdi, %rcx
        movq %rsi, %rax
        xorl %edx, %edx
        test %rcx, %rcx
        jz 2f
1:      movq (%rax), %rax
        addq 8(%rax), %rdx
        movq %rdx, 16(%rax)
        decq %rcx
        jnz 1b
2:      addq %rdx, %rax
        ret

/* Calls: 8 instructions per iteration (call, call, add, ret, add, ret, dec,
 * jnz), two frames deep. */
        .globl bench_call
bench_call:
        movq %rdi, %rcx
        xorl %eax, %eax
        test %rcx, %rcx
        jz 2f
1:      call call_outer
        decq %rcx
        jnz 1b
2:      ret
call_outer:
        call call_inner
        addq %rcx, %rax
        ret
call_inner:
        xorq %rcx, %rax
        ret

/* Bitwise CRC-32 (reflected, polynomial 0xedb88320) over arg, a 4 KiB
 * buffer read round and round; an iteration is one byte. The branch on each
 * bit depends on the data, and both ways retire the same count (shr, jc,
 * then jmp or xor; dec, jnz: 5 per bit), so an iteration is
 * 5 (load, xor, inc, and, mov) + 8 * 5 + 2 (dec, jnz) = 47 instructions. */
        .globl bench_crc
bench_crc:
        movq %rdi, %rcx
        movl $0xffffffff, %eax
        xorl %r8d, %r8d
        movl $0xedb88320, %edx
        test %rcx, %rcx
        jz 9f
1:      movzbl (%rsi,%r8), %r9d
        xorl %r9d, %eax
        incl %r8d
        andl $4095, %r8d
        movl $8, %r10d
2:      shrl $1, %eax
        jc 3f
        jmp 4f
3:      xorl %edx, %eax
4:      decl %r10d
        jnz 2b
        decq %rcx
        jnz 1b
9:      notl %eax
        ret

/* TLB pressure: arg is the base of a region of TLB_REGION_BYTES (32 MiB,
 * 8192 pages) mapped with 4 KiB pages; each iteration reads one quadword,
 * then steps 509 pages and 8 bytes on, wrapping at the end of the region.
 * 509 is odd, so the page numbers run through all 8192 pages rather than a
 * subset, and consecutive accesses are never on the same page: far more
 * pages than any software TLB holds. 5 instructions per iteration. */
        .globl bench_tlb
bench_tlb:
        push %rbx
        movq %rdi, %rcx
        xorl %edx, %edx
        xorl %ebx, %ebx
        movq $(509 * 4096 + 8), %r9
        movq $(32 * 1024 * 1024 - 1), %r8
        test %rcx, %rcx
        jz 2f
1:      addq (%rsi,%rdx), %rbx
        addq %r9, %rdx
        andq %r8, %rdx
        decq %rcx
        jnz 1b
2:      movq %rbx, %rax
        pop %rbx
        ret

        .section .note.GNU-stack, "", @progbits
