/* The benchmark loops (mips_workloads.S) and how many instructions one
 * iteration of each retires, counted from the assembly. */
#ifndef HOSTVISOR_BENCH_KERNELS_MIPS_WORKLOADS_H
#define HOSTVISOR_BENCH_KERNELS_MIPS_WORKLOADS_H

#include <stdint.h>

uint64_t bench_alu(uint64_t iterations, uint64_t seed);
uint64_t bench_chase(uint64_t iterations, uint64_t first_node);
uint64_t bench_call(uint64_t iterations, uint64_t unused);
uint64_t bench_crc(uint64_t iterations, uint64_t buffer_4k);
uint64_t bench_tlb(uint64_t iterations, uint64_t region_base);

#define BENCH_ALU_INSNS 10u
#define BENCH_CHASE_INSNS 5u
#define BENCH_CALL_INSNS 8u
#define BENCH_CRC_INSNS 47u
#define BENCH_TLB_INSNS 5u

/* bench_tlb walks a region of this size (the mask in the assembly). */
#define TLB_REGION_BYTES (32ull << 20)

#endif
