/* Cross-modifying code on two CPUs: each CPU runs a tiny function in its own
 * code page ("mov eax, imm32; ret") that only the *other* CPU rewrites. Round
 * r: a CPU patches the other's immediate to r, then calls its own page until
 * it returns r (or r + 1: the other CPU may finish round r and patch for
 * r + 1 first; it cannot get further ahead, as it waits for this CPU's r + 1). A CPU that keeps running a stale decoded copy of its page
 * (a lost invalidation: the other CPU's store went through a fast path that
 * did not see the page had become code) never sees r; the bounded wait then
 * reports FAIL instead of hanging. Run with --cpus 2 (QEMU: -smp 2).
 *
 * smc_smp_serialized (this file with SMC_SMP_SERIALIZED) is the strict
 * variant: only CPU 1 patches, only CPU 0's page, as the SDM asks for
 * cross-modifying code. Round r: CPU 0 says it is ready and keeps calling its
 * page (old or new code may run meanwhile); CPU 1 stores into the page (the
 * same scratch stores first), writes r, then signals r; CPU 0 sees the
 * signal, executes CPUID (serializing) and calls its page once: it must
 * return r, at once, not eventually. */
#include "hvtest.h"

#ifdef SMC_SMP_SERIALIZED
#define SCENARIO "smc_smp_serialized"
#else
#define SCENARIO "smc_smp"
#endif
const char test_scenario[] = SCENARIO;

#define LAPIC_SVR 0xf0
#define ROUNDS 1000u
/* How long a CPU waits for a patch before it says FAIL, in TSC ticks (some
 * seconds at GHz rates): a bound in time, not in calls, as the other vCPU's
 * host thread may not run for a while on a loaded host. */
#define PATIENCE_TICKS (1ull << 34)

/* The immediate sits at offset 4, so a patch is one aligned 32-bit store. */
static const uint8_t kTemplate[] = {0x90, 0x90, 0x90, 0xb8, 0, 0, 0, 0, 0xc3}; /* nop x3; mov eax, 0; ret */
enum { IMM_OFFSET = 4, SCRATCH_OFFSET = 2048, SCRATCH_STORES = 64 };

static uint8_t code_page[2][4096] __attribute__((aligned(4096)));
static uint8_t ap_stack[4096] __attribute__((aligned(16)));
static volatile uint32_t checked_in;
static volatile uint32_t failed;        /* set by whichever CPU gave up first */
static volatile uint32_t stuck_at[2];   /* the value each CPU's page last returned, when it gave up */
static volatile uint32_t rounds_done[2];

static uint32_t lapic_read(uint32_t reg) { return *(volatile uint32_t*)(uintptr_t)(LAPIC_BASE + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t*)(uintptr_t)(LAPIC_BASE + reg) = v; }

typedef uint32_t (*page_fn)(void);

/* Stores into the page before the patch: the first one, while the page is
 * code, invalidates it and the owner decodes it again (marking it code once
 * more) while the next ones run, so the patching store comes just after the
 * page became code again: the window in which a store may go through a fast
 * path taken while the page was not code. */
static void patch(int page, uint32_t value) {
  for (int i = 0; i < SCRATCH_STORES; i++) {
    __atomic_store_n((uint32_t*)(void*)&code_page[page][SCRATCH_OFFSET], (uint32_t)i, __ATOMIC_RELAXED);
  }
  __atomic_store_n((uint32_t*)(void*)&code_page[page][IMM_OFFSET], value, __ATOMIC_SEQ_CST);
}

#ifndef SMC_SMP_SERIALIZED
/* The rounds of CPU `self`: it runs page `self` and patches page `1 - self`. */
static void play(int self) {
  page_fn own = (page_fn)(void*)code_page[self];
  for (uint32_t round = 1; round <= ROUNDS; round++) {
    patch(1 - self, round);
    uint32_t seen = 0;
    uint64_t start = rdtsc();
    /* No PAUSE and only a rare RDTSC in this loop: the point is that the CPU
     * stays in its (translated) code while the other CPU patches it. */
    for (uint32_t calls = 1; (seen = own()) < round && !__atomic_load_n(&failed, __ATOMIC_RELAXED); calls++) {
      if (calls % 4096 == 0 && rdtsc() - start > PATIENCE_TICKS) break;
    }
    if (seen < round) {
      stuck_at[self] = seen;
      __atomic_store_n(&failed, 1, __ATOMIC_SEQ_CST);
      return;
    }
    rounds_done[self] = round;
  }
}
#endif

#ifdef SMC_SMP_SERIALIZED
static volatile uint32_t ready; /* the round CPU 0 waits for a patch for */
static volatile uint32_t go;    /* the round CPU 1 patched for */

static void serialize(void) {
  uint32_t a = 0, b, c = 0, d;
  __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d)::"memory");
}

/* CPU 1: patches CPU 0's page for each round CPU 0 is ready for. */
static void patch_rounds(void) {
  for (uint32_t round = 1; round <= ROUNDS; round++) {
    uint64_t start = rdtsc();
    while (__atomic_load_n(&ready, __ATOMIC_ACQUIRE) < round) {
      if (__atomic_load_n(&failed, __ATOMIC_RELAXED) || rdtsc() - start > PATIENCE_TICKS) return;
    }
    patch(0, round);
    __atomic_store_n(&go, round, __ATOMIC_RELEASE);
    rounds_done[1] = round;
  }
}

/* CPU 0: runs its page while CPU 1 patches it, then, after the signal and a
 * serializing instruction, must run the patched code. */
static void run_rounds(void) {
  page_fn own = (page_fn)(void*)code_page[0];
  for (uint32_t round = 1; round <= ROUNDS; round++) {
    __atomic_store_n(&ready, round, __ATOMIC_RELEASE);
    uint64_t start = rdtsc();
    for (uint32_t calls = 1; __atomic_load_n(&go, __ATOMIC_ACQUIRE) < round; calls++) {
      (void)own();
      if (calls % 4096 == 0 && rdtsc() - start > PATIENCE_TICKS) {
        stuck_at[0] = own();
        __atomic_store_n(&failed, 2, __ATOMIC_SEQ_CST);
        return;
      }
    }
    serialize();
    const uint32_t seen = own();
    if (seen != round) {
      stuck_at[0] = seen;
      __atomic_store_n(&failed, 1, __ATOMIC_SEQ_CST);
      return;
    }
    rounds_done[0] = round;
  }
}
#endif

__attribute__((noreturn)) void ap_main(void);
void ap_main(void) {
  __atomic_fetch_add(&checked_in, 1, __ATOMIC_SEQ_CST);
#ifdef SMC_SMP_SERIALIZED
  patch_rounds();
#else
  play(1);
#endif
  __atomic_fetch_add(&checked_in, 1, __ATOMIC_SEQ_CST);
  halt_forever();
}

void test_main(const struct boot_info* info) {
  print(SCENARIO ": booted as %s\n", info->format_name);
  for (int page = 0; page < 2; page++) memcpy(code_page[page], kTemplate, sizeof(kTemplate));
  lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | 0x100); /* software-enable the local APIC */

  ap_start(ap_main, ap_stack + sizeof(ap_stack), &checked_in);
  for (long spins = 0; spins < 3000000 && !__atomic_load_n(&checked_in, __ATOMIC_SEQ_CST); spins++) {
    __asm__ volatile("pause");
  }
  if (!checked_in) test_fail("the AP never checked in after INIT/SIPI (is --cpus 2 set?)");

#ifdef SMC_SMP_SERIALIZED
  run_rounds();
  if (failed == 1) {
    test_fail("after the signal and CPUID, CPU0 ran its page's old code in round %u (it returned %u)",
              rounds_done[0] + 1, stuck_at[0]);
  }
  if (failed) test_fail("CPU1 did not patch round %u in time (it patched %u)", rounds_done[0] + 1, rounds_done[1]);
  print(SCENARIO ": CPU0 ran each of the %u patches by CPU1 right after the signal and CPUID\n", ROUNDS);
  test_pass();
#else
  play(0);
  /* The AP finishes its rounds (or gives up) within its own bound. */
  for (long spins = 0; spins < 100000000 && __atomic_load_n(&checked_in, __ATOMIC_SEQ_CST) < 2; spins++) {
    __asm__ volatile("pause");
  }
  if (failed) {
    test_fail("a CPU kept running a stale copy of its code page: CPU0 after %u rounds (page returns %u), "
              "CPU1 after %u rounds (page returns %u)",
              rounds_done[0], stuck_at[0], rounds_done[1], stuck_at[1]);
  }
  if (checked_in < 2) test_fail("the AP did not finish its %u rounds (done %u)", ROUNDS, rounds_done[1]);
  print(SCENARIO ": both CPUs saw all %u patches of their code page by the other CPU\n", ROUNDS);
  test_pass();
#endif
}
