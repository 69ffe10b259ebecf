// Placing what comes with a kernel into guest RAM: the command line and the
// initrd. Shared by the three loaders.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "arch/x86_64/e820.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace hostvisor::arch {

// "0x1f000" for messages.
std::string hex(uint64_t value);

// Writes cmdline NUL-terminated at kCmdlineAddress. max_length (without the
// NUL) is what the kernel accepts; longer or NUL-containing lines are errors.
Result<uint64_t> write_cmdline(GuestMemory& memory, const std::string& cmdline, uint64_t max_length);

enum class Placement { kHighest, kLowest };

// A page-aligned address for size bytes inside one usable e820 RAM range and
// inside [lowest, limit): the highest or the lowest such address. Fails with
// a message naming what for (e.g. "initrd") when nothing fits.
Result<uint64_t> find_ram_for(const std::vector<E820Entry>& map, uint64_t size, uint64_t lowest, uint64_t limit,
                              Placement placement, const char* what);

// find_ram_for (never below 1 MiB) + copy: loads the initrd and returns its
// guest address.
Result<uint64_t> load_initrd(GuestMemory& memory, const std::vector<E820Entry>& map, std::span<const uint8_t> initrd,
                             uint64_t lowest, uint64_t limit, Placement placement);

// True when [a, a + a_size) and [b, b + b_size) intersect (overflow-safe for
// ranges that fit the address space).
bool ranges_overlap(uint64_t a, uint64_t a_size, uint64_t b, uint64_t b_size);

}  // namespace hostvisor::arch
