// IoEngine: asynchronous reads, writes, flushes, hole punching and range
// zeroing on host file descriptors. Two implementations: io_uring (the default) and a thread pool
// (the fallback where io_uring is unavailable, e.g. blocked by a seccomp
// policy or an old kernel). Completions are delivered on the thread that
// calls reap(), so the caller decides where callbacks run (the device event
// loop, or a synchronous caller waiting for its own request).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"

namespace hostvisor::block {

// kDiscard punches a hole (fallocate PUNCH_HOLE|KEEP_SIZE); kZeroRange makes
// the range read as zeros keeping its blocks allocated (fallocate
// ZERO_RANGE|KEEP_SIZE). Both fail with -EOPNOTSUPP where the file system
// cannot; callers fall back to writing zeros.
enum class IoOp { kRead, kWrite, kFlush, kDiscard, kZeroRange };

struct IoRequest {
  IoOp op = IoOp::kRead;
  int fd = -1;
  uint64_t offset = 0;
  // Read and write: the buffers. They must stay valid until the completion runs.
  const iovec* iov = nullptr;
  int iovcnt = 0;
  // Discard and zero-range: the byte count.
  uint64_t length = 0;
};

// Called with the byte count transferred (read/write), 0 (flush/discard/zero-range) or a negative errno.
using IoCompletion = std::function<void(int64_t result)>;

enum class EngineKind { kAuto, kIoUring, kThreadPool };

const char* engine_kind_name(EngineKind kind);
Result<EngineKind> parse_engine_kind(const std::string& text);

class IoEngine {
 public:
  virtual ~IoEngine() = default;
  virtual const char* name() const = 0;

  // Queues a request. Submission to the kernel may be batched until the next reap().
  virtual void submit(const IoRequest& request, IoCompletion done) = 0;

  // Submits what is queued and runs the callbacks of finished requests on this
  // thread. With wait=true it blocks until at least one request has finished
  // (returns at once when nothing is in flight).
  virtual void reap(bool wait) = 0;

  // Requests submitted whose callbacks have not run yet.
  virtual size_t in_flight() const = 0;

  // An eventfd that becomes readable when completions are ready for reap(),
  // for event loops. Reading it is the loop's job.
  virtual int notify_fd() const = 0;

  // Synchronous helper: submits one request and reaps until it has finished.
  // Other requests' callbacks may run meanwhile (on this thread).
  int64_t execute(const IoRequest& request);
};

// Creates an engine with room for queue_depth requests in flight. kAuto tries
// io_uring and falls back to the thread pool, logging why.
Result<std::unique_ptr<IoEngine>> create_io_engine(EngineKind kind, unsigned queue_depth = 128);

}  // namespace hostvisor::block
