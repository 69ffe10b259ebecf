/* The MIPS benchmark kernel: runs one compute-bound workload for a given
 * number of iterations and ends through the debug-exit port. The command line
 * says which and how many:
 *     bench=alu|chase|call|crc|tlb iterations=N
 * N = 0 does everything but the loop (the same set-up, console output and
 * exit), so timing a run with N = 0 measures the start-up and shut-down cost
 * that bench/guest_mips.bench.sh subtracts. Given N with the same number of
 * digits (the scripts pad it with zeros), the two runs retire exactly
 * N * (the loop's instructions per iteration) apart. Each loop iteration retires a
 * known number of instructions (mips_workloads.h); the kernel prints that
 * count and a checksum of the result, which must be the same on every
 * emulator. Needs 64 MiB of RAM: its data lives at 16-64 MiB. */
#include "hvtest.h"
#include "mips_workloads.h"

const char test_scenario[] = "bench-mips";

/* Where the data lives (guest-physical; the boot code identity-maps the low
 * 4 GiB, so these are also the addresses the kernel uses). */
#define CHASE_BASE (16ull << 20)
#define CHASE_BYTES (1ull << 20)
#define CHASE_NODE_BYTES 64u
#define TLB_PHYS_BASE (32ull << 20)
/* The TLB region is mapped a second time, with 4 KiB pages, at 512 GiB
 * (PML4 slot 1), which the boot page tables leave empty. */
#define TLB_VIRT_BASE (1ull << 39)
#define PAGE_BYTES 4096u
#define PT_ENTRIES 512u
#define TLB_PAGES (TLB_REGION_BYTES / PAGE_BYTES)
#define TLB_PAGE_TABLES (TLB_PAGES / PT_ENTRIES)
#define PTE_PRESENT_WRITABLE 3ull
#define DATA_END (TLB_PHYS_BASE + TLB_REGION_BYTES)

static uint64_t tlb_pdpt[PT_ENTRIES] __attribute__((aligned(PAGE_BYTES)));
static uint64_t tlb_pd[PT_ENTRIES] __attribute__((aligned(PAGE_BYTES)));
static uint64_t tlb_pt[TLB_PAGE_TABLES][PT_ENTRIES] __attribute__((aligned(PAGE_BYTES)));
static uint8_t crc_buffer[4096];

/* The value of the word `key=value` in the command line, or NULL. */
static const char* option(const char* cmdline, const char* key) {
  size_t key_len = strlen(key);
  const char* p = cmdline;
  while (p && *p) {
    while (*p == ' ') p++;
    if (memcmp(p, key, key_len) == 0 && p[key_len] == '=') return p + key_len + 1;
    while (*p && *p != ' ') p++;
  }
  return NULL;
}

static bool word_is(const char* value, const char* word) {
  size_t n = strlen(word);
  return memcmp(value, word, n) == 0 && (value[n] == ' ' || value[n] == '\0');
}

/* Sixteen hex digits whatever the value, so that printing the results costs
 * the same instructions in a run with N iterations as in one with zero. */
static void put_hex64(uint64_t v) {
  static const char digits[] = "0123456789abcdef";
  for (int shift = 60; shift >= 0; shift -= 4) serial_putc(digits[(v >> shift) & 15]);
}

/* A decimal count; false when it is missing, not a number or over 2^63. */
static bool parse_count(const char* text, uint64_t* out) {
  uint64_t v = 0;
  if (!text || *text < '0' || *text > '9') return false;
  for (; *text >= '0' && *text <= '9'; text++) {
    if (v > ((1ull << 63) - 9) / 10) return false;
    v = v * 10 + (uint64_t)(*text - '0');
  }
  if (*text != ' ' && *text != '\0') return false;
  *out = v;
  return true;
}

/* The workloads' data must sit in RAM the boot protocol reported usable. */
static bool ram_covers(const struct boot_info* info, uint64_t start, uint64_t end) {
  for (uint32_t i = 0; i < info->range_count; i++) {
    const struct mem_range* r = &info->ranges[i];
    if (r->type == MEM_USABLE && r->addr <= start && end - r->addr <= r->size) return true;
  }
  return false;
}

static uint64_t xorshift(uint64_t* state) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *state = x;
}

/* A cyclic list through every node of the chase area in a scattered order:
 * node i links to node (i + stride) mod n, stride odd and n a power of two,
 * so one cycle visits all n nodes, about a third of the area apart. */
static uint64_t setup_chase(void) {
  const uint64_t n = CHASE_BYTES / CHASE_NODE_BYTES;
  const uint64_t stride = n / 3 | 1;
  uint64_t seed = 0x2545f4914f6cdd1dull;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t* node = (uint64_t*)(CHASE_BASE + i * CHASE_NODE_BYTES);
    node[0] = CHASE_BASE + ((i + stride) & (n - 1)) * CHASE_NODE_BYTES;
    node[1] = xorshift(&seed);
    node[2] = 0;
  }
  return CHASE_BASE;
}

static uint64_t setup_crc(void) {
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < sizeof(crc_buffer); i++) crc_buffer[i] = (uint8_t)(xorshift(&seed) >> 56);
  return (uint64_t)(uintptr_t)crc_buffer;
}

/* Maps TLB_REGION_BYTES of RAM at TLB_VIRT_BASE with 4 KiB pages and fills
 * each page with its own number (through the new mapping, so a wrong
 * translation changes the checksum). */
static uint64_t setup_tlb(void) {
  uint64_t* pml4 = (uint64_t*)(uintptr_t)(read_cr3() & ~0xfffull);
  if (pml4[1] != 0) test_fail("PML4 slot 1 is already in use (0x%lx)", pml4[1]);
  for (uint64_t t = 0; t < TLB_PAGE_TABLES; t++) {
    for (uint64_t e = 0; e < PT_ENTRIES; e++)
      tlb_pt[t][e] = (TLB_PHYS_BASE + (t * PT_ENTRIES + e) * PAGE_BYTES) | PTE_PRESENT_WRITABLE;
    tlb_pd[t] = (uint64_t)(uintptr_t)tlb_pt[t] | PTE_PRESENT_WRITABLE;
  }
  tlb_pdpt[0] = (uint64_t)(uintptr_t)tlb_pd | PTE_PRESENT_WRITABLE;
  pml4[1] = (uint64_t)(uintptr_t)tlb_pdpt | PTE_PRESENT_WRITABLE;
  write_cr3(read_cr3());
  for (uint64_t page = 0; page < TLB_PAGES; page++) {
    void* dst = (void*)(uintptr_t)(TLB_VIRT_BASE + page * PAGE_BYTES);
    uint64_t count = PAGE_BYTES / 8;
    __asm__ volatile("rep stosq" : "+D"(dst), "+c"(count) : "a"(page) : "memory");
  }
  return TLB_VIRT_BASE;
}

struct workload {
  const char* name;
  uint64_t insns_per_iteration;
  uint64_t (*setup)(void);
  uint64_t (*run)(uint64_t iterations, uint64_t arg);
};

static uint64_t no_setup(void) { return 0x1234; }

static const struct workload workloads[] = {
    {"alu", BENCH_ALU_INSNS, no_setup, bench_alu},    {"chase", BENCH_CHASE_INSNS, setup_chase, bench_chase},
    {"call", BENCH_CALL_INSNS, no_setup, bench_call}, {"crc", BENCH_CRC_INSNS, setup_crc, bench_crc},
    {"tlb", BENCH_TLB_INSNS, setup_tlb, bench_tlb},
};

void test_main(const struct boot_info* info) {
  const char* name = option(info->cmdline, "bench");
  const char* count_text = option(info->cmdline, "iterations");
  uint64_t iterations = 0;
  if (!name || !parse_count(count_text, &iterations))
    test_fail("command line must say bench=alu|chase|call|crc|tlb iterations=N (got \"%s\")",
              info->cmdline ? info->cmdline : "");
  const struct workload* w = NULL;
  for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
    if (word_is(name, workloads[i].name)) w = &workloads[i];
  if (!w) test_fail("unknown workload in \"%s\": use alu, chase, call, crc or tlb", info->cmdline);
  if (!ram_covers(info, CHASE_BASE, DATA_END))
    test_fail("RAM 16-64 MiB is not usable: give the guest at least 128 MiB");
  if (iterations > UINT64_MAX / w->insns_per_iteration) test_fail("iterations=%lu is too many", iterations);

  uint64_t arg = w->setup();
  uint64_t checksum = w->run(iterations, arg);
  print("bench %s insns_per_iteration %lu iterations 0x", w->name, w->insns_per_iteration);
  put_hex64(iterations);
  print(" loop_insns 0x");
  put_hex64(iterations * w->insns_per_iteration);
  print(" checksum 0x");
  put_hex64(checksum);
  print("\n");
  test_pass();
}
