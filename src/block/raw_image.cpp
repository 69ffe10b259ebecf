#include "block/raw_image.h"

#include <unistd.h>

namespace hostvisor::block {

Result<std::unique_ptr<RawImage>> RawImage::open(std::unique_ptr<HostFile> file) {
  uint64_t size = HV_TRY(file->size());
  return std::unique_ptr<RawImage>(new RawImage(std::move(file), size));
}

Result<void> RawImage::create(const std::string& path, uint64_t size) {
  HostFileOptions options;
  options.create = true;
  options.engine = EngineKind::kThreadPool;
  auto file = HV_TRY(HostFile::open(path, options));
  HV_TRY(file->truncate(size));
  return file->flush();
}

RawImage::~RawImage() {
  while (in_flight_ > 0) poll_completions(true);
  shutdown_async();
}

Result<void> RawImage::readv(uint64_t offset, std::span<const iovec> iov) {
  HV_TRY(check_range(offset, iov_bytes(iov)));
  return file_->readv(offset, iov);
}

Result<void> RawImage::writev(uint64_t offset, std::span<const iovec> iov) {
  if (read_only()) return Error(ErrorCode::kInvalidArgument, file_->path() + ": disk is read-only");
  HV_TRY(check_range(offset, iov_bytes(iov)));
  return file_->writev(offset, iov);
}

Result<void> RawImage::flush() { return file_->flush(); }

Result<void> RawImage::discard(uint64_t offset, uint64_t length) {
  if (read_only()) return Error(ErrorCode::kInvalidArgument, file_->path() + ": disk is read-only");
  HV_TRY(check_range(offset, length));
  // Discard is advisory: a file system without hole punching simply keeps the data.
  HV_TRY(file_->punch_hole(offset, length));
  return ok();
}

Result<void> RawImage::write_zeroes(uint64_t offset, uint64_t length) {
  if (read_only()) return Error(ErrorCode::kInvalidArgument, file_->path() + ": disk is read-only");
  HV_TRY(check_range(offset, length));
  // A punched hole reads as zeros; only whole aligned blocks are punched, the edges written.
  uint64_t align = 4096;
  uint64_t start = (offset + align - 1) / align * align;
  uint64_t end = (offset + length) / align * align;
  if (end > start) {
    bool punched = HV_TRY(file_->punch_hole(start, end - start));
    if (punched) {
      HV_TRY(BlockDevice::write_zeroes(offset, start - offset));
      return BlockDevice::write_zeroes(end, offset + length - end);
    }
  }
  return BlockDevice::write_zeroes(offset, length);
}

Result<void> RawImage::resize(uint64_t new_size) {
  if (read_only()) return Error(ErrorCode::kInvalidArgument, file_->path() + ": disk is read-only");
  HV_TRY(file_->truncate(new_size));
  size_ = new_size;
  return ok();
}

struct RawImage::Pending {
  BlockRequest request;
  BlockCompletion done;
};

void RawImage::complete_now(BlockCompletion done, Result<void> result) {
  ready_.emplace_back(std::move(done), std::move(result));
  ++in_flight_;
  // Wake an event loop waiting on notify_fd() as a real completion would.
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(file_->engine().notify_fd(), &one, sizeof(one));
}

void RawImage::finish(Pending* p, int64_t n) {
  std::unique_ptr<Pending> owned(p);
  --in_flight_;
  Result<void> result = ok();
  BlockRequest& r = owned->request;
  if (n < 0) {
    result = Error::from_errno(file_->path() + ": asynchronous I/O at offset " + std::to_string(r.offset),
                               static_cast<int>(-n));
  } else if ((r.op == BlockOp::kRead || r.op == BlockOp::kWrite) && static_cast<uint64_t>(n) < iov_bytes(r.iov)) {
    // Short transfer: finish the remainder synchronously.
    std::vector<iovec> rest;
    size_t skip = static_cast<size_t>(n);
    for (const auto& v : r.iov) {
      if (skip >= v.iov_len) {
        skip -= v.iov_len;
        continue;
      }
      rest.push_back({static_cast<uint8_t*>(v.iov_base) + skip, v.iov_len - skip});
      skip = 0;
    }
    uint64_t at = r.offset + static_cast<uint64_t>(n);
    result = r.op == BlockOp::kRead ? file_->readv(at, rest) : file_->writev(at, rest);
  }
  owned->done(std::move(result));
}

void RawImage::submit(BlockRequest request, BlockCompletion done) {
  IoOp op;
  switch (request.op) {
    case BlockOp::kRead:
    case BlockOp::kWrite: {
      op = request.op == BlockOp::kRead ? IoOp::kRead : IoOp::kWrite;
      auto range = check_range(request.offset, iov_bytes(request.iov));
      if (!range.ok()) return complete_now(std::move(done), range);
      if (op == IoOp::kWrite && read_only()) {
        return complete_now(std::move(done), Error(ErrorCode::kInvalidArgument, file_->path() + ": disk is read-only"));
      }
      if (!file_->direct_ok(request.offset, request.iov)) {
        // O_DIRECT with unaligned guest buffers: bounce synchronously.
        auto r = op == IoOp::kRead ? readv(request.offset, request.iov) : writev(request.offset, request.iov);
        return complete_now(std::move(done), r);
      }
      break;
    }
    case BlockOp::kFlush:
      if (file_->cache_mode() == CacheMode::kUnsafe || read_only()) return complete_now(std::move(done), ok());
      op = IoOp::kFlush;
      break;
    case BlockOp::kDiscard:
    case BlockOp::kWriteZeroes: {
      auto r = request.op == BlockOp::kDiscard ? discard(request.offset, request.length)
                                               : write_zeroes(request.offset, request.length);
      return complete_now(std::move(done), r);
    }
    default: return complete_now(std::move(done), Error(ErrorCode::kInternal, "unknown block operation"));
  }
  auto* p = new Pending{std::move(request), std::move(done)};
  IoRequest io{op, file_->fd(), p->request.offset, p->request.iov.data(), static_cast<int>(p->request.iov.size()), 0};
  ++in_flight_;
  file_->engine().submit(io, [this, p](int64_t n) { finish(p, n); });
}

void RawImage::poll_completions(bool wait) {
  if (!ready_.empty()) {
    auto ready = std::move(ready_);
    ready_.clear();
    in_flight_ -= ready.size();
    for (auto& [done, result] : ready) done(std::move(result));
    wait = false;
  }
  file_->engine().reap(wait);
}

}  // namespace hostvisor::block
