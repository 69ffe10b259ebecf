#include "block/raw/image.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "block/qcow2/format.h"

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

Result<void> RawImage::check_header_write(uint64_t offset, std::span<const iovec> iov) const {
  if (!format_probed_ || offset != 0 || iov_bytes(iov) < 4) return ok();
  uint8_t head[4];
  uint64_t got = 0;
  for (const iovec& v : iov) {
    const size_t take = std::min<size_t>(v.iov_len, sizeof(head) - got);
    std::memcpy(head + got, v.iov_base, take);
    got += take;
    if (got == sizeof(head)) break;
  }
  if (qcow2::load_be32(head) != qcow2::kMagic) return ok();
  return Error(ErrorCode::kInvalidArgument,
               file_->path() +
                   ": refusing to write a qcow2 header into a disk whose format was guessed as raw (it could "
                   "name any host file as its backing file); give format=raw to allow it");
}

Result<void> RawImage::writev(uint64_t offset, std::span<const iovec> iov) {
  HV_TRY(check_writable());
  HV_TRY(check_range(offset, iov_bytes(iov)));
  HV_TRY(check_header_write(offset, iov));
  return file_->writev(offset, iov);
}

Result<void> RawImage::flush() { return file_->flush(); }

Result<void> RawImage::discard(uint64_t offset, uint64_t length) {
  HV_TRY(check_writable());
  HV_TRY(check_range(offset, length));
  // Discard is advisory: a file system without hole punching simply keeps the data.
  HV_TRY(file_->punch_hole(offset, length));
  return ok();
}

Result<void> RawImage::write_zeroes(uint64_t offset, uint64_t length) {
  HV_TRY(check_writable());
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
  HV_TRY(check_writable());
  HV_TRY(file_->truncate(new_size));
  size_ = new_size;
  return ok();
}

struct RawImage::Op {
  BlockRequest request;
  BlockCompletion done;
  uint64_t seq = 0;
  // The aligned extent the range lock covers (O_DIRECT changes only).
  bool locks = false;
  bool exclusive = false;
  uint64_t lo = 0, hi = 0;
};

struct RawImage::Transfer {
  IoOp kind;
  uint64_t offset;
  std::vector<iovec> iov;
  size_t first = 0;
  Step next;
};

namespace {

bool fallocate_unsupported(int64_t n) { return n == -EOPNOTSUPP || n == -ENOSYS || n == -EINVAL; }

}  // namespace

void RawImage::complete_now(BlockCompletion done, Result<void> result) {
  ++in_flight_;
  ready_.emplace_back(std::move(done), std::move(result));
  // Wake an event loop waiting on notify_fd() as a real completion would.
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(file_->engine().notify_fd(), &one, sizeof(one));
}

void RawImage::submit(BlockRequest request, BlockCompletion done) {
  uint64_t len = 0;
  switch (request.op) {
    case BlockOp::kRead:
    case BlockOp::kWrite: len = iov_bytes(request.iov); break;
    case BlockOp::kDiscard:
    case BlockOp::kWriteZeroes: len = request.length; break;
    case BlockOp::kFlush: break;
    default: return complete_now(std::move(done), Error(ErrorCode::kInternal, "unknown block operation"));
  }
  if (request.op != BlockOp::kFlush) {
    auto range = check_range(request.offset, len);
    if (!range.ok()) return complete_now(std::move(done), range);
    if (request.op != BlockOp::kRead && read_only()) return complete_now(std::move(done), check_writable());
    if (request.op == BlockOp::kWrite) {
      if (auto header = check_header_write(request.offset, request.iov); !header.ok()) {
        return complete_now(std::move(done), std::move(header));
      }
    }
  }
  auto op = std::make_shared<Op>();
  op->request = std::move(request);
  op->done = std::move(done);
  op->seq = next_seq_++;
  running_seqs_.insert(op->seq);
  ++in_flight_;
  if (op->request.op == BlockOp::kFlush) {
    held_flushes_.push_back(std::move(op));
    return release_flushes();
  }
  admit(std::move(op));
}

bool RawImage::conflicts(const Op& a, const Op& b) const {
  return (a.exclusive || b.exclusive) && a.lo < b.hi && b.lo < a.hi;
}

void RawImage::admit(std::shared_ptr<Op> op) {
  const BlockRequest& r = op->request;
  size_t align = file_->alignment();
  if (align == 1 || r.op == BlockOp::kRead) return start(std::move(op));
  uint64_t len = r.op == BlockOp::kWrite ? iov_bytes(r.iov) : r.length;
  op->locks = true;
  op->lo = r.offset / align * align;
  op->hi = (r.offset + len + align - 1) / align * align;
  // Read-modify-write: a bounced write, or write-zeroes with partial blocks
  // (its fallback writes them through the bounce path).
  op->exclusive = r.op == BlockOp::kWrite ? !file_->direct_ok(r.offset, r.iov)
                                          : r.op == BlockOp::kWriteZeroes && (r.offset % align || len % align);
  for (const auto& other : lock_waiters_) {
    if (conflicts(*op, *other)) return lock_waiters_.push_back(std::move(op));
  }
  for (const auto& other : locked_) {
    if (conflicts(*op, *other)) return lock_waiters_.push_back(std::move(op));
  }
  locked_.push_back(op);
  start(std::move(op));
}

void RawImage::start(std::shared_ptr<Op> op) {
  const BlockRequest& r = op->request;
  Step finished = [this, op](Result<void> result) { finish(op, std::move(result)); };
  switch (r.op) {
    case BlockOp::kRead:
    case BlockOp::kWrite:
      return rw_async(r.op == BlockOp::kRead ? IoOp::kRead : IoOp::kWrite, r.offset, r.iov, std::move(finished));
    case BlockOp::kDiscard: {
      if (r.length == 0) return finished(ok());
      IoRequest io{IoOp::kDiscard, file_->fd(), r.offset, nullptr, 0, r.length};
      return file_->engine().submit(io, [this, finished = std::move(finished), at = r.offset](int64_t n) {
        // Discard is advisory: a file system without hole punching simply keeps the data.
        if (n >= 0 || fallocate_unsupported(n)) return finished(ok());
        finished(Error::from_errno(file_->path() + ": punching a hole at offset " + std::to_string(at),
                                   static_cast<int>(-n)));
      });
    }
    case BlockOp::kWriteZeroes: return write_zeroes_async(op, std::move(finished));
    case BlockOp::kFlush: break;
  }
  finished(Error(ErrorCode::kInternal, "unknown block operation"));
}

void RawImage::write_zeroes_async(std::shared_ptr<Op> op, Step next) {
  const BlockRequest& r = op->request;
  if (r.length == 0) return next(ok());
  // UNMAP allowed: punch a hole (reads as zeros, frees the blocks). Otherwise
  // zero in place, and punch only where the file system cannot; writing
  // zeros is the last resort.
  auto punch = [this, op, next](int64_t) {
    const BlockRequest& r = op->request;
    IoRequest io{IoOp::kDiscard, file_->fd(), r.offset, nullptr, 0, r.length};
    file_->engine().submit(io, [this, op, next](int64_t n) {
      const BlockRequest& r = op->request;
      if (n >= 0) return next(ok());
      if (fallocate_unsupported(n)) return write_zero_buffers(op, r.offset, r.length, next);
      next(Error::from_errno(file_->path() + ": punching a hole at offset " + std::to_string(r.offset),
                             static_cast<int>(-n)));
    });
  };
  if (r.unmap) return punch(0);
  IoRequest io{IoOp::kZeroRange, file_->fd(), r.offset, nullptr, 0, r.length};
  file_->engine().submit(io, [this, op, next, punch](int64_t n) {
    if (n >= 0) return next(ok());
    if (fallocate_unsupported(n)) return punch(n);
    next(Error::from_errno(file_->path() + ": zeroing at offset " + std::to_string(op->request.offset),
                           static_cast<int>(-n)));
  });
}

void RawImage::write_zero_buffers(std::shared_ptr<Op> op, uint64_t offset, uint64_t length, Step next) {
  if (length == 0) return next(ok());
  constexpr size_t kChunk = 1 << 20;
  size_t align = file_->alignment();
  if (zeros_.size() == 0) {
    zeros_ = AlignedBuffer(kChunk, std::max<size_t>(align, 4096));
    std::memset(zeros_.data(), 0, zeros_.size());
  }
  // Up to the next aligned boundary first, so the chunks after it need no bounce.
  uint64_t chunk = std::min<uint64_t>(length, kChunk);
  if (offset % align != 0) chunk = std::min<uint64_t>(chunk, align - offset % align);
  std::vector<iovec> iov{{zeros_.data(), static_cast<size_t>(chunk)}};
  rw_async(IoOp::kWrite, offset, std::move(iov), [this, op, offset, length, chunk, next](Result<void> r) {
    if (!r.ok()) return next(std::move(r));
    write_zero_buffers(op, offset + chunk, length - chunk, next);
  });
}

void RawImage::rw_async(IoOp kind, uint64_t offset, std::vector<iovec> iov, Step next) {
  if (file_->direct_ok(offset, iov)) return transfer_async(kind, offset, std::move(iov), std::move(next));
  if (kind == IoOp::kRead) return bounced_read(offset, std::move(iov), std::move(next));
  bounced_write(offset, std::move(iov), std::move(next));
}

void RawImage::transfer_async(IoOp kind, uint64_t offset, std::vector<iovec> iov, Step next) {
  auto t = std::make_shared<Transfer>();
  t->kind = kind;
  t->offset = offset;
  t->iov = std::move(iov);
  t->next = std::move(next);
  transfer_step(std::move(t));
}

void RawImage::transfer_step(std::shared_ptr<Transfer> t) {
  while (t->first < t->iov.size() && t->iov[t->first].iov_len == 0) ++t->first;
  if (t->first == t->iov.size()) return t->next(ok());
  int count = static_cast<int>(std::min<size_t>(t->iov.size() - t->first, IOV_MAX));
  IoRequest io{t->kind, file_->fd(), t->offset, t->iov.data() + t->first, count, 0};
  file_->engine().submit(io, [this, t](int64_t n) {
    bool is_read = t->kind == IoOp::kRead;
    if (n == -EINTR || n == -EAGAIN) return transfer_step(t);
    if (n < 0) {
      return t->next(Error::from_errno(
          file_->path() + (is_read ? ": read at offset " : ": write at offset ") + std::to_string(t->offset),
          static_cast<int>(-n)));
    }
    if (n == 0) {
      if (!is_read) {
        return t->next(
            Error(ErrorCode::kIo, file_->path() + ": write made no progress at offset " + std::to_string(t->offset)));
      }
      // End of the file: the rest reads as zeros.
      iov_fill_zero(std::span<const iovec>(t->iov).subspan(t->first));
      return t->next(ok());
    }
    // A short transfer continues from where it stopped, as another request.
    t->offset += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (left > 0 && t->first < t->iov.size()) {
      iovec& v = t->iov[t->first];
      size_t take = std::min(left, v.iov_len);
      v.iov_base = static_cast<uint8_t*>(v.iov_base) + take;
      v.iov_len -= take;
      left -= take;
      if (v.iov_len == 0) ++t->first;
    }
    transfer_step(t);
  });
}

void RawImage::bounced_read(uint64_t offset, std::vector<iovec> iov, Step next) {
  size_t align = file_->alignment();
  uint64_t start = offset / align * align;
  uint64_t end = (offset + iov_bytes(iov) + align - 1) / align * align;
  auto buf = std::make_shared<AlignedBuffer>(end - start, align);
  std::vector<iovec> whole{{buf->data(), end - start}};
  transfer_async(IoOp::kRead, start, std::move(whole),
                 [buf, offset, start, iov = std::move(iov), next = std::move(next)](Result<void> r) {
                   if (r.ok()) iov_copy_in(iov, buf->data() + (offset - start));
                   next(std::move(r));
                 });
}

void RawImage::bounced_write(uint64_t offset, std::vector<iovec> iov, Step next) {
  size_t align = file_->alignment();
  size_t len = iov_bytes(iov);
  uint64_t start = offset / align * align;
  uint64_t end = (offset + len + align - 1) / align * align;
  auto buf = std::make_shared<AlignedBuffer>(end - start, align);
  // Last step: the guest's bytes over the blocks as read, written whole.
  Step write_whole = [this, buf, offset, start, end, iov = std::move(iov), next](Result<void> r) {
    if (!r.ok()) return next(std::move(r));
    iov_copy_out(iov, buf->data() + (offset - start));
    // The buffer lives until the write has finished with it.
    transfer_async(IoOp::kWrite, start, {{buf->data(), end - start}},
                   [buf, next](Result<void> written) { next(std::move(written)); });
  };
  bool head_partial = offset != start;
  bool tail_partial = (offset + len) % align != 0;
  if (!head_partial && !tail_partial) return write_whole(ok());
  if (end - start <= 2 * align) return transfer_async(IoOp::kRead, start, {{buf->data(), end - start}}, write_whole);
  Step read_tail = [this, buf, start, end, align, tail_partial, write_whole](Result<void> r) {
    if (!r.ok() || !tail_partial) return write_whole(std::move(r));
    transfer_async(IoOp::kRead, end - align, {{buf->data() + (end - start) - align, align}}, write_whole);
  };
  if (!head_partial) return read_tail(ok());
  transfer_async(IoOp::kRead, start, {{buf->data(), align}}, read_tail);
}

void RawImage::finish(std::shared_ptr<Op> op, Result<void> result) {
  running_seqs_.erase(op->seq);
  if (op->locks) {
    locked_.erase(std::find(locked_.begin(), locked_.end(), op));
    // Admit the waiters the lock now lets in, oldest first; one that still
    // conflicts keeps later overlapping ones behind it.
    std::deque<std::shared_ptr<Op>> waiting;
    waiting.swap(lock_waiters_);
    for (auto& w : waiting) {
      bool blocked =
          std::any_of(locked_.begin(), locked_.end(), [&](const auto& l) { return conflicts(*w, *l); }) ||
          std::any_of(lock_waiters_.begin(), lock_waiters_.end(), [&](const auto& l) { return conflicts(*w, *l); });
      if (blocked) {
        lock_waiters_.push_back(std::move(w));
      } else {
        locked_.push_back(w);
        start(std::move(w));
      }
    }
  }
  if (polling_) {
    --in_flight_;
    op->done(std::move(result));
  } else {
    ready_.emplace_back(std::move(op->done), std::move(result));
    uint64_t one = 1;
    [[maybe_unused]] ssize_t w = ::write(file_->engine().notify_fd(), &one, sizeof(one));
  }
  release_flushes();
}

void RawImage::release_flushes() {
  // Held flushes are in submission order; the front one may go once nothing
  // submitted before it is still running.
  while (!held_flushes_.empty() && *running_seqs_.begin() == held_flushes_.front()->seq) {
    std::shared_ptr<Op> flush = std::move(held_flushes_.front());
    held_flushes_.pop_front();
    if (file_->cache_mode() == CacheMode::kUnsafe || read_only()) {
      finish(std::move(flush), ok());
      continue;
    }
    IoRequest io{IoOp::kFlush, file_->fd(), 0, nullptr, 0, 0};
    // The flush stays in running_seqs_ until it completes, so later flushes wait for it.
    file_->engine().submit(io, [this, flush](int64_t n) {
      Result<void> r = ok();
      if (n < 0) r = Error::from_errno(file_->path() + ": fdatasync", static_cast<int>(-n));
      finish(flush, std::move(r));
    });
    return;
  }
}

void RawImage::poll_completions(bool wait) {
  auto deliver = [this] {
    if (ready_.empty()) return false;
    auto ready = std::move(ready_);
    ready_.clear();
    in_flight_ -= ready.size();
    for (auto& [done, result] : ready) done(std::move(result));
    return true;
  };
  if (deliver()) wait = false;
  polling_ = true;
  file_->engine().reap(wait);
  polling_ = false;
  deliver();
}

}  // namespace hostvisor::block
