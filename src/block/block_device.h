// BlockDevice: a virtual disk as the guest sees it (a flat array of bytes of
// virtual_size()), whatever the image format behind it. The synchronous calls
// serve the CLI and the formats' own layering (backing files); submit() is
// the asynchronous path virtio-blk uses.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::block {

enum class BlockOp { kRead, kWrite, kFlush, kDiscard, kWriteZeroes };

// One guest request. iov (read/write) must stay valid until the completion runs.
struct BlockRequest {
  BlockOp op = BlockOp::kRead;
  uint64_t offset = 0;
  std::vector<iovec> iov;
  uint64_t length = 0;  // discard / write-zeroes
  // Write-zeroes: the range may also be deallocated (virtio-blk's UNMAP flag).
  // Without it the blocks are zeroed in place where the format can.
  bool unmap = false;
};

using BlockCompletion = std::function<void(Result<void>)>;

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;

  virtual const char* format_name() const = 0;
  virtual uint64_t virtual_size() const = 0;
  virtual bool read_only() const = 0;

  // Byte-granular, scatter-gather. Ranges must lie within virtual_size().
  virtual Result<void> readv(uint64_t offset, std::span<const iovec> iov) = 0;
  virtual Result<void> writev(uint64_t offset, std::span<const iovec> iov) = 0;
  // After flush() returns, every write completed before it survives a host crash.
  virtual Result<void> flush() = 0;
  // Tells the image the range is unused; it may read back as zeros or as before.
  virtual Result<void> discard(uint64_t offset, uint64_t length) = 0;
  // Makes the range read as zeros, cheaply where the format allows.
  virtual Result<void> write_zeroes(uint64_t offset, uint64_t length);

  Result<void> read(uint64_t offset, void* buf, size_t len) {
    iovec v{buf, len};
    return readv(offset, {&v, 1});
  }
  Result<void> write(uint64_t offset, const void* buf, size_t len) {
    iovec v{const_cast<void*>(buf), len};
    return writev(offset, {&v, 1});
  }

  // Asynchronous path. The completion runs on the thread that calls
  // poll_completions(); notify_fd() becomes readable when there are some.
  // submit() never does the I/O itself nor waits for it: it only validates
  // and queues, so the thread that calls it (a VMM event loop, a vCPU) never
  // blocks on the disk. Completions may arrive in any order, except that a
  // flush completes only after every request submitted before it has
  // completed (and is durable, cache mode permitting). Requests that overlap
  // and are in flight together complete in an unspecified order, as on a real
  // disk: a caller that needs one after the other waits for the first.
  // The default implementation runs requests on a per-device worker thread
  // over the synchronous calls (qcow2's metadata updates are serialized anyway);
  // raw images override it to go straight to the I/O engine.
  virtual void submit(BlockRequest request, BlockCompletion done);
  virtual void poll_completions(bool wait);
  virtual int notify_fd();
  virtual size_t requests_in_flight() const;

 protected:
  // Runs finished worker requests' callbacks; returns how many ran.
  size_t poll_worker(bool wait);
  // Makes the worker signal this eventfd (too) when a request finishes, so a
  // format with its own completion source can offer one notify_fd().
  void set_worker_notify_fd(int fd) { worker_notify_fd_ = fd; }
  // Finishes queued asynchronous requests and stops the worker. Formats call
  // it first thing in their destructors, while the object is still whole.
  void shutdown_async();
  // Checks that [offset, offset+len) lies inside the disk.
  Result<void> check_range(uint64_t offset, uint64_t len) const;

 private:
  class Worker;
  std::shared_ptr<Worker> worker_;
  int worker_notify_fd_ = -1;
};

}  // namespace hostvisor::block
