// The Linux bzImage loader (boot protocol header, setup_sects, placement, zero page) on hostile kernel files.
#include "arch/x86_64/bzimage.h"
#include "fuzz/kernel_loader_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return hostvisor::fuzz::fuzz_kernel_loader(hostvisor::arch::load_bzimage, data, size);
}
