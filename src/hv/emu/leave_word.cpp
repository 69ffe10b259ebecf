#include "hv/emu/leave_word.h"

#include <sys/mman.h>

#include <mutex>
#include <new>
#include <vector>

namespace hostvisor::emu {
namespace {

constexpr size_t kLine = 64;
constexpr size_t kPoolWords = 1024;

struct Pool {
  std::mutex mutex;
  uint8_t* base = nullptr;  // kPoolWords lines in the low 2 GiB, or nullptr
  size_t next = 0;          // lines handed out at least once
  std::vector<std::atomic<uint32_t>*> free;
};

Pool& pool() {
  // Never destroyed: words may be written by other threads until the process ends.
  static Pool* p = [] {
    auto* made = new Pool;
    void* m = mmap(nullptr, kPoolWords * kLine, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (m != MAP_FAILED && absolute32(static_cast<uint8_t*>(m) + kPoolWords * kLine - 1)) {
      made->base = static_cast<uint8_t*>(m);
    } else if (m != MAP_FAILED) {
      munmap(m, kPoolWords * kLine);
    }
    return made;
  }();
  return *p;
}

}  // namespace

std::atomic<uint32_t>* acquire_leave_word() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  std::atomic<uint32_t>* word = nullptr;
  if (!p.free.empty()) {
    word = p.free.back();
    p.free.pop_back();
  } else if (p.base && p.next < kPoolWords) {
    word = new (p.base + kLine * p.next++) std::atomic<uint32_t>(0);
  } else {
    word = new (std::align_val_t(kLine)) std::atomic<uint32_t>(0);
  }
  word->store(0, std::memory_order_relaxed);
  return word;
}

void release_leave_word(std::atomic<uint32_t>* word) {
  if (!word) return;
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  p.free.push_back(word);
}

}  // namespace hostvisor::emu
