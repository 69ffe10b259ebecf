// The ELF64 / PVH loader (ELF headers, program headers, notes, segments) on hostile kernel files.
// The input is the kernel file; a small initrd and a command line always come
// with it so the placement and info-structure paths run too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "arch/x86_64/elf_kernel.h"
#include "arch/x86_64/layout.h"
#include "memory/guest_memory.h"

using namespace hostvisor;
using namespace hostvisor::arch;

namespace {

struct Guest {
  MemoryLayout layout;
  GuestMemory memory;
};

Guest& guest() {
  static Guest* g = [] {
    auto layout = memory_layout(32 * kMiB);
    auto memory = GuestMemory::create(layout->regions());
    if (!layout.ok() || !memory.ok()) std::abort();
    return new Guest{*layout, std::move(memory).value()};
  }();
  return *g;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<uint8_t> initrd(4097, 0x5a);
  Guest& g = guest();
  KernelImage image{std::span<const uint8_t>(data, size), initrd, "console=ttyS0 root=/dev/vda"};
  auto setup = load_elf_kernel(g.memory, g.layout, image);
  // Every loader checks its entry point lies in what it loaded.
  if (setup.ok() && !g.memory.contains(GuestAddress(setup->regs.rip), 1)) std::abort();
  return 0;
}
