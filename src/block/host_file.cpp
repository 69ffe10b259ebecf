#include "block/host_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace hostvisor::block {

AlignedBuffer::AlignedBuffer(size_t size, size_t alignment) : size_(size) {
  size_t rounded = (size + alignment - 1) / alignment * alignment;
  data_ = static_cast<uint8_t*>(std::aligned_alloc(alignment, rounded == 0 ? alignment : rounded));
  if (data_ == nullptr) throw std::bad_alloc();
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(data_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

Result<std::unique_ptr<HostFile>> HostFile::open(const std::string& path, const HostFileOptions& options) {
  std::unique_ptr<HostFile> file(new HostFile());
  file->path_ = path;
  file->writable_ = options.writable || options.create;
  file->cache_ = options.cache;
  int flags = file->writable_ ? O_RDWR : O_RDONLY;
  if (options.create) flags |= O_CREAT | O_TRUNC;
  if (options.cache == CacheMode::kNone) {
    flags |= O_DIRECT;
    // 4 KiB satisfies O_DIRECT on every common device and file system (512-byte
    // sector devices accept it too), so it is used without probing.
    file->alignment_ = 4096;
  }
  auto fd = open_file(path, flags);
  if (!fd.ok()) {
    if (options.cache == CacheMode::kNone && errno == EINVAL) {
      return Error(ErrorCode::kUnsupported,
                   path + ": the file system does not support O_DIRECT (cache=none); use cache=writeback");
    }
    return fd.error();
  }
  file->fd_ = std::move(fd).value();
  file->engine_ = HV_TRY(create_io_engine(options.engine, options.queue_depth));
  file->untouched_from_ = HV_TRY(file->size());
  return file;
}

bool HostFile::direct_ok(uint64_t offset, std::span<const iovec> iov) const {
  if (alignment_ == 1) return true;
  if (offset % alignment_ != 0) return false;
  for (const auto& v : iov) {
    if (reinterpret_cast<uintptr_t>(v.iov_base) % alignment_ != 0 || v.iov_len % alignment_ != 0) return false;
  }
  return true;
}

Result<void> HostFile::transfer(IoOp op, uint64_t offset, std::span<const iovec> iov_in) {
  // Transfers may come back short (end of file, signals); continue from where they stopped.
  std::vector<iovec> iov(iov_in.begin(), iov_in.end());
  size_t first = 0;
  while (first < iov.size()) {
    if (iov[first].iov_len == 0) {
      ++first;
      continue;
    }
    IoRequest req{
        op, fd_.get(), offset, iov.data() + first, static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX)), 0};
    int64_t n = engine_->execute(req);
    if (n == -EINTR || n == -EAGAIN) continue;
    if (n < 0) {
      return Error::from_errno(
          path_ + (op == IoOp::kRead ? ": read at offset " : ": write at offset ") + std::to_string(offset),
          static_cast<int>(-n));
    }
    if (n == 0) {
      if (op == IoOp::kWrite)
        return Error(ErrorCode::kIo, path_ + ": write made no progress at offset " + std::to_string(offset));
      // End of file: the rest reads as zeros.
      for (size_t i = first; i < iov.size(); ++i) std::memset(iov[i].iov_base, 0, iov[i].iov_len);
      return ok();
    }
    offset += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (left > 0 && first < iov.size()) {
      size_t take = std::min(left, iov[first].iov_len);
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + take;
      iov[first].iov_len -= take;
      left -= take;
      if (iov[first].iov_len == 0) ++first;
    }
  }
  return ok();
}

Result<void> HostFile::bounced(IoOp op, uint64_t offset, std::span<const iovec> iov) {
  size_t len = iov_bytes(iov);
  uint64_t start = offset / alignment_ * alignment_;
  uint64_t end = (offset + len + alignment_ - 1) / alignment_ * alignment_;
  AlignedBuffer buf(end - start, alignment_);
  iovec whole{buf.data(), end - start};
  if (op == IoOp::kRead) {
    HV_TRY(transfer(IoOp::kRead, start, {&whole, 1}));
    const uint8_t* src = buf.data() + (offset - start);
    for (const auto& v : iov) {
      std::memcpy(v.iov_base, src, v.iov_len);
      src += v.iov_len;
    }
    return ok();
  }
  // Read-modify-write of the partial blocks at either end.
  if (offset != start || (offset + len) % alignment_ != 0) {
    if (end - start <= 2 * alignment_) {
      HV_TRY(transfer(IoOp::kRead, start, {&whole, 1}));
    } else {
      iovec head{buf.data(), alignment_};
      iovec tail{buf.data() + (end - start) - alignment_, alignment_};
      HV_TRY(transfer(IoOp::kRead, start, {&head, 1}));
      HV_TRY(transfer(IoOp::kRead, end - alignment_, {&tail, 1}));
    }
  }
  uint8_t* dst = buf.data() + (offset - start);
  for (const auto& v : iov) {
    std::memcpy(dst, v.iov_base, v.iov_len);
    dst += v.iov_len;
  }
  return transfer(IoOp::kWrite, start, {&whole, 1});
}

Result<void> HostFile::readv(uint64_t offset, std::span<const iovec> iov) {
  if (!direct_ok(offset, iov)) return bounced(IoOp::kRead, offset, iov);
  return transfer(IoOp::kRead, offset, iov);
}

Result<void> HostFile::writev(uint64_t offset, std::span<const iovec> iov) {
  if (!writable_) return Error(ErrorCode::kInvalidArgument, path_ + ": image is open read-only");
  // Conservative: counted as written even if the write fails part-way.
  note_write(offset, iov_bytes(iov));
  if (!direct_ok(offset, iov)) return bounced(IoOp::kWrite, offset, iov);
  return transfer(IoOp::kWrite, offset, iov);
}

Result<void> HostFile::read(uint64_t offset, void* buf, size_t len) {
  iovec v{buf, len};
  return readv(offset, {&v, 1});
}

Result<void> HostFile::write(uint64_t offset, const void* buf, size_t len) {
  iovec v{const_cast<void*>(buf), len};
  return writev(offset, {&v, 1});
}

Result<void> HostFile::flush() {
  if (cache_ == CacheMode::kUnsafe || !writable_) return ok();
  IoRequest req{IoOp::kFlush, fd_.get(), 0, nullptr, 0, 0};
  int64_t n = engine_->execute(req);
  if (n < 0) return Error::from_errno(path_ + ": fdatasync", static_cast<int>(-n));
  return ok();
}

Result<bool> HostFile::punch_hole(uint64_t offset, uint64_t len) {
  if (!writable_) return Error(ErrorCode::kInvalidArgument, path_ + ": image is open read-only");
  if (len == 0) return true;
  IoRequest req{IoOp::kDiscard, fd_.get(), offset, nullptr, 0, len};
  int64_t n = engine_->execute(req);
  if (n == -EOPNOTSUPP || n == -ENOSYS || n == -EINVAL) return false;
  if (n < 0) return Error::from_errno(path_ + ": punching a hole", static_cast<int>(-n));
  return true;
}

Result<uint64_t> HostFile::size() const {
  // lseek rather than fstat: it also gives the size of a block device.
  off_t end = lseek(fd_.get(), 0, SEEK_END);
  if (end < 0) return Error::from_errno(path_ + ": finding the file size");
  return static_cast<uint64_t>(end);
}

Result<void> HostFile::truncate(uint64_t size) {
  if (ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) return Error::from_errno(path_ + ": ftruncate");
  untouched_from_ = std::max(untouched_from_, size);
  return ok();
}

}  // namespace hostvisor::block
