#include "hv/emu/jit/code_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace hostvisor::emu::jit {

Result<std::unique_ptr<CodeCache>> CodeCache::create(size_t bytes) {
  if (bytes < kMinBytes || bytes > kMaxBytes) {
    return Error(ErrorCode::kInvalidArgument, "the code cache size " + std::to_string(bytes) + " is outside " +
                                                  std::to_string(kMinBytes) + ".." + std::to_string(kMaxBytes) +
                                                  " bytes");
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t size = (bytes + page - 1) / page * page;
  const int fd = memfd_create("hostvisor-emu-code", MFD_CLOEXEC);
  if (fd < 0) return Error::from_errno("memfd_create for the code cache");
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    Error e = Error::from_errno("sizing the code cache");
    close(fd);
    return e;
  }
  void* w = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (w == MAP_FAILED) {
    Error e = Error::from_errno("mapping the code cache's writable view");
    close(fd);
    return e;
  }
  void* x = mmap(nullptr, size, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
  if (x == MAP_FAILED) {
    Error e = Error::from_errno("mapping the code cache's executable view");
    munmap(w, size);
    close(fd);
    return e;
  }
  return std::unique_ptr<CodeCache>(new CodeCache(fd, static_cast<uint8_t*>(w), static_cast<uint8_t*>(x), size));
}

CodeCache::~CodeCache() {
  munmap(write_, size_);
  munmap(exec_, size_);
  close(fd_);
}

const uint8_t* CodeCache::add(std::span<const uint8_t> code) {
  const size_t start = (used_ + kAlign - 1) & ~(kAlign - 1);
  if (start > size_ || code.size() > size_ - start) return nullptr;
  std::memcpy(write_ + start, code.data(), code.size());
  used_ = start + code.size();
  // x86 keeps instruction fetch coherent with stores by physical address,
  // so the executable view sees what was written through the other one; a
  // translation is only ever run by this thread, after the copy.
  return exec_ + start;
}

void CodeCache::patch_rel32(const uint8_t* site, const uint8_t* target) {
  const int32_t rel = static_cast<int32_t>(target - (site + 4));
  std::memcpy(write_ + (site - exec_), &rel, 4);
}

const uint8_t* CodeCache::rel32_target(const uint8_t* site) const {
  int32_t rel;
  std::memcpy(&rel, site, 4);
  return site + 4 + rel;
}

void CodeCache::flush() {
  used_ = 0;
  ++generation_;
}

bool CodeCache::contains(const void* p) const {
  const auto* b = static_cast<const uint8_t*>(p);
  return b >= exec_ && b < exec_ + size_;
}

}  // namespace hostvisor::emu::jit
