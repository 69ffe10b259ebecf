// The multiboot v1 loader (header search, a.out kludge, ELF32 segments, info structure) on hostile kernel files.
#include "arch/x86_64/multiboot.h"
#include "fuzz/kernel_loader_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return hostvisor::fuzz::fuzz_kernel_loader(hostvisor::arch::load_multiboot, data, size);
}
