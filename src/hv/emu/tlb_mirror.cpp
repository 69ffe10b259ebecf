#include "hv/emu/tlb_mirror.h"

#include <sys/mman.h>

#include <new>

namespace hostvisor::emu {

TlbMirror* map_tlb_mirror(bool low) {
  void* m = MAP_FAILED;
  if (low) {
    m = mmap(nullptr, sizeof(TlbMirror), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
  }
  if (m == MAP_FAILED) m = mmap(nullptr, sizeof(TlbMirror), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  auto* mirror = static_cast<TlbMirror*>(m);
  mirror->clear();
  return mirror;
}

void unmap_tlb_mirror(TlbMirror* mirror) {
  if (mirror) munmap(mirror, sizeof(TlbMirror));
}

}  // namespace hostvisor::emu
