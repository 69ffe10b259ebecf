/* Writes every 4 KiB page of usable RAM from 16 MiB up, then idles with
 * interrupts on until the host stops it: the memory backing tests look at
 * how the host backs the VM's RAM (huge pages, locked, merged) while it runs.
 * Each page holds its own address and a fixed pattern, so a page differs from
 * every other page of the VM but is the same in two VMs that run this kernel
 * (which KSM merges). */
#include "hvtest.h"

const char test_scenario[] = "memtouch";

#define FIRST_TOUCHED (16ull << 20)
#define PAGE 4096ull

void test_main(const struct boot_info* info) {
  if (info->error) test_fail("boot info: %s", info->error);
  uint64_t touched = 0;
  for (uint32_t i = 0; i < info->range_count; ++i) {
    const struct mem_range* r = &info->ranges[i];
    if (r->type != MEM_USABLE) continue;
    uint64_t start = r->addr < FIRST_TOUCHED ? FIRST_TOUCHED : r->addr;
    start = (start + PAGE - 1) & ~(PAGE - 1);
    const uint64_t end = (r->addr + r->size) & ~(PAGE - 1);
    for (uint64_t page = start; page + PAGE <= end; page += PAGE) {
      volatile uint64_t* words = (volatile uint64_t*)page;
      words[0] = page;
      for (uint64_t w = 1; w < PAGE / 8; ++w) words[w] = 0x6d656d746f756368ull;
      touched += PAGE;
    }
  }
  print("memtouch: touched %lu MiB\n", touched >> 20);
  for (;;) __asm__ volatile("sti; hlt");
}
