// What the three kernel-loader fuzz targets share: a 32 MiB guest, reused
// across inputs, and the input as the kernel file with a small initrd and a
// command line, so the placement and info-structure paths run too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "arch/x86_64/kernel_image.h"
#include "arch/x86_64/layout.h"
#include "memory/guest_memory.h"

namespace hostvisor::fuzz {

template <typename Loader>
int fuzz_kernel_loader(Loader load, const uint8_t* data, size_t size) {
  struct Guest {
    arch::MemoryLayout layout;
    GuestMemory memory;
  };
  static Guest* guest = [] {
    auto layout = arch::memory_layout(32 * arch::kMiB);
    if (!layout.ok()) std::abort();
    auto memory = GuestMemory::create(layout->regions());
    if (!memory.ok()) std::abort();
    return new Guest{*layout, std::move(memory).value()};
  }();
  static const std::vector<uint8_t> initrd(4097, 0x5a);
  arch::KernelImage image{std::span<const uint8_t>(data, size), initrd, "console=ttyS0 root=/dev/vda"};
  auto setup = load(guest->memory, guest->layout, image);
  // Every loader checks its entry point lies in what it loaded.
  if (setup.ok() && !guest->memory.contains(GuestAddress(setup->regs.rip), 1)) std::abort();
  return 0;
}

}  // namespace hostvisor::fuzz
