#include "arch/x86_64/boot_payload.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "arch/x86_64/layout.h"

namespace hostvisor::arch {

std::string hex(uint64_t value) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#" PRIx64, value);
  return buf;
}

Result<uint64_t> write_cmdline(GuestMemory& memory, const std::string& cmdline, uint64_t max_length) {
  if (max_length > kCmdlineMaxSize - 1) max_length = kCmdlineMaxSize - 1;
  if (cmdline.size() > max_length)
    return Error(ErrorCode::kInvalidArgument, "kernel command line is " + std::to_string(cmdline.size()) +
                                                  " bytes but at most " + std::to_string(max_length) +
                                                  " are accepted: shorten --append");
  if (std::memchr(cmdline.data(), '\0', cmdline.size()) != nullptr)
    return Error(ErrorCode::kInvalidArgument, "kernel command line contains a NUL byte");
  HV_TRY(memory.write(GuestAddress(kCmdlineAddress),
                      std::span(reinterpret_cast<const uint8_t*>(cmdline.c_str()), cmdline.size() + 1)));
  return kCmdlineAddress;
}

static uint64_t align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }

Result<uint64_t> find_ram_for(const std::vector<E820Entry>& map, uint64_t size, uint64_t lowest, uint64_t limit,
                              Placement placement, const char* what) {
  bool found = false;
  uint64_t best = 0;
  for (const auto& e : map) {
    if (e.type != E820Type::kRam) continue;
    // The usable window is the entry clipped to [lowest, limit).
    uint64_t start = e.address > lowest ? e.address : lowest;
    uint64_t end = e.end() < limit ? e.end() : limit;
    if (start > UINT64_MAX - (kPageSize - 1)) continue;
    start = align_down(start + kPageSize - 1, kPageSize);
    if (start >= end || end - start < size) continue;
    const uint64_t candidate = placement == Placement::kLowest ? start : align_down(end - size, kPageSize);
    if (candidate < start) continue;
    if (!found || (placement == Placement::kLowest ? candidate < best : candidate > best)) best = candidate;
    found = true;
  }
  if (!found)
    return Error(ErrorCode::kOutOfRange, std::string(what) + " of " + std::to_string(size) +
                                             " bytes does not fit in guest RAM between " + hex(lowest) + " and " +
                                             hex(limit) + ": give the VM more memory (--memory) or make it smaller");
  return best;
}

Result<uint64_t> load_initrd(GuestMemory& memory, const std::vector<E820Entry>& map, std::span<const uint8_t> initrd,
                             uint64_t lowest, uint64_t limit, Placement placement) {
  // Never below 1 MiB: conventional memory holds the boot structures.
  if (lowest < kHighMemoryStart) lowest = kHighMemoryStart;
  const uint64_t address = HV_TRY(find_ram_for(map, initrd.size(), lowest, limit, placement, "initrd"));
  HV_TRY(memory.write(GuestAddress(address), initrd));
  return address;
}

bool ranges_overlap(uint64_t a, uint64_t a_size, uint64_t b, uint64_t b_size) {
  if (a_size == 0 || b_size == 0) return false;
  return a < b ? b - a < a_size : a - b < b_size;
}

}  // namespace hostvisor::arch
