// The translated tier's code memory: one memfd mapped twice, a read-write
// view the translator writes through and a read-execute view the CPU runs,
// so no page is ever writable and executable at once (W^X) and no
// mprotect toggle or its TLB shootdowns are needed. The size is bounded;
// when it is full the whole cache is dropped (generation()+1) and filled
// again, which every translation notices by its stale generation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "base/result.h"

namespace hostvisor::emu::jit {

class CodeCache {
 public:
  static constexpr size_t kMinBytes = 64 * 1024;
  static constexpr size_t kMaxBytes = 1ull << 30;
  static constexpr size_t kAlign = 16;

  // `bytes` is rounded up to whole pages; it must lie in [kMinBytes, kMaxBytes].
  static Result<std::unique_ptr<CodeCache>> create(size_t bytes);
  ~CodeCache();
  CodeCache(const CodeCache&) = delete;
  CodeCache& operator=(const CodeCache&) = delete;

  // Copies `code` in and returns where it runs (the executable view), or
  // nullptr when it does not fit: the caller flushes and tries again.
  const uint8_t* add(std::span<const uint8_t> code);
  // Points the JMP/Jcc rel32 at `site` (in the executable view) to `target`,
  // through the writable view (block chaining).
  void patch_rel32(const uint8_t* site, const uint8_t* target);
  // Where the rel32 at `site` jumps now.
  const uint8_t* rel32_target(const uint8_t* site) const;
  // Drops every translation: the space is reused, generation() moves.
  void flush();

  size_t capacity() const { return size_; }
  size_t used() const { return used_; }
  // Flushes so far: a translation made under another generation is gone.
  uint64_t generation() const { return generation_; }
  // True when `p` points into the executable view.
  bool contains(const void* p) const;

 private:
  CodeCache(int fd, uint8_t* write, uint8_t* exec, size_t size) : fd_(fd), write_(write), exec_(exec), size_(size) {}
  int fd_;
  uint8_t* write_;
  uint8_t* exec_;
  size_t size_;
  size_t used_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace hostvisor::emu::jit
