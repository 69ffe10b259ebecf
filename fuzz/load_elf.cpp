// The ELF64 / PVH loader (ELF headers, program headers, notes, segments) on hostile kernel files.
#include "arch/x86_64/elf_kernel.h"
#include "fuzz/kernel_loader_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return hostvisor::fuzz::fuzz_kernel_loader(hostvisor::arch::load_elf_kernel, data, size);
}
