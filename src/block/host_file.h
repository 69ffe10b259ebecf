// HostFile: one host file holding image data, accessed through an IoEngine
// with a cache mode. Gives the image formats simple synchronous positioned
// I/O (whole transfers, zeros past the end of the file) and, for raw images,
// the asynchronous path straight to the engine. With cache=none it keeps
// O_DIRECT's alignment rules away from callers by bouncing unaligned requests.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/fd.h"
#include "block/cache_mode.h"
#include "block/io_engine.h"
#include "block/iov.h"

namespace hostvisor::block {

struct HostFileOptions {
  bool writable = false;
  bool create = false;  // create or truncate (implies writable)
  CacheMode cache = CacheMode::kWriteback;
  EngineKind engine = EngineKind::kAuto;
  unsigned queue_depth = 128;
};

class HostFile {
 public:
  static Result<std::unique_ptr<HostFile>> open(const std::string& path, const HostFileOptions& options);

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  bool writable() const { return writable_; }
  CacheMode cache_mode() const { return cache_; }
  IoEngine& engine() { return *engine_; }
  // Alignment O_DIRECT needs for offsets, lengths and buffers (1 without O_DIRECT).
  size_t alignment() const { return alignment_; }

  // Reads exactly the requested bytes; bytes past the end of the file read as zeros.
  Result<void> read(uint64_t offset, void* buf, size_t len);
  Result<void> readv(uint64_t offset, std::span<const iovec> iov);
  // Writes exactly the requested bytes, extending the file as needed.
  Result<void> write(uint64_t offset, const void* buf, size_t len);
  Result<void> writev(uint64_t offset, std::span<const iovec> iov);
  // fdatasync, except with cache=unsafe.
  Result<void> flush();
  // Frees the host blocks behind a range (reads return zeros afterwards).
  // Returns false when the file system cannot punch holes.
  Result<bool> punch_hole(uint64_t offset, uint64_t len);

  Result<uint64_t> size() const;
  Result<void> truncate(uint64_t size);

  // Everything at or past this offset has never been written through this
  // object since it was opened, and was past the end of the file then, so it
  // reads as zeros. (Writes that bypass this object stay inside ranges that were
  // written through it first, so they cannot falsify it.)
  uint64_t untouched_from() const { return untouched_from_; }
  // Records a write issued on the engine directly (not through writev), so
  // untouched_from() stays true.
  void note_write(uint64_t offset, uint64_t len) {
    untouched_from_ = std::max(untouched_from_, (offset + len + alignment_ - 1) / alignment_ * alignment_);
  }

  // True when the request can go to the engine as it is (no O_DIRECT bouncing needed).
  bool direct_ok(uint64_t offset, std::span<const iovec> iov) const;

 private:
  HostFile() = default;
  Result<void> transfer(IoOp op, uint64_t offset, std::span<const iovec> iov);
  Result<void> bounced(IoOp op, uint64_t offset, std::span<const iovec> iov);

  std::string path_;
  UniqueFd fd_;
  bool writable_ = false;
  CacheMode cache_ = CacheMode::kWriteback;
  size_t alignment_ = 1;
  uint64_t untouched_from_ = 0;
  std::unique_ptr<IoEngine> engine_;
};

// Heap buffer with the alignment O_DIRECT needs.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(size_t size, size_t alignment = 4096);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace hostvisor::block
