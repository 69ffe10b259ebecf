#include "block/engine/uring_engine.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <mutex>
#include <vector>

#include "base/log.h"

namespace hostvisor::block {

namespace {

// The operations submit() issues; a ring with restrictions refuses every
// other opcode with -EACCES (the kernel checks each SQE before it runs it).
constexpr uint8_t kAllowedOps[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC, IORING_OP_FALLOCATE};

// Limits the ring (created IORING_SETUP_R_DISABLED) to kAllowedOps with no
// SQE flags (no fixed files, links or personalities) and, once enabled, to
// no io_uring_register operation at all: a thread taken over by a bug that
// writes into the submission queue cannot open, connect, send or register
// anything through it, which seccomp would not see (docs/seccomp.md).
Result<void> restrict_ring(io_uring& ring) {
  std::vector<io_uring_restriction> restrictions;
  for (uint8_t op : kAllowedOps) {
    io_uring_restriction r{};
    r.opcode = IORING_RESTRICTION_SQE_OP;
    r.sqe_op = op;
    restrictions.push_back(r);
  }
  io_uring_restriction flags{};
  flags.opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
  flags.sqe_flags = 0;
  restrictions.push_back(flags);
  int err = io_uring_register_restrictions(&ring, restrictions.data(), static_cast<unsigned>(restrictions.size()));
  if (err < 0) return Error::from_errno("io_uring_register_restrictions", -err);
  err = io_uring_enable_rings(&ring);
  if (err < 0) return Error::from_errno("io_uring_enable_rings", -err);
  return {};
}

}  // namespace

Result<std::unique_ptr<UringEngine>> UringEngine::create(unsigned queue_depth) {
  std::unique_ptr<UringEngine> engine(new UringEngine());
  // Disabled until its restrictions are in place (Linux 5.10); an older
  // kernel refuses the flag, and gets an unrestricted ring and one warning.
  int err = io_uring_queue_init(queue_depth, &engine->ring_, IORING_SETUP_R_DISABLED);
  engine->restricted_ = err == 0;
  if (err == -EINVAL) {
    static std::once_flag warned;
    std::call_once(warned, [] {
      HV_LOG_WARN(
          "io_uring: this kernel cannot restrict a ring's operations (IORING_SETUP_R_DISABLED needs Linux "
          "5.10): disk rings run unrestricted, and their operations bypass seccomp");
    });
    err = io_uring_queue_init(queue_depth, &engine->ring_, 0);
  }
  if (err < 0) return Error::from_errno("io_uring_queue_init", -err);
  engine->ring_ready_ = true;
  // Hole punching and zeroing go through the ring too (IORING_OP_FALLOCATE,
  // Linux 5.6), so they never block the thread that submits them. A kernel
  // without it gets the thread-pool engine, which runs fallocate on its workers.
  io_uring_probe* probe = io_uring_get_probe_ring(&engine->ring_);
  bool has_fallocate = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_FALLOCATE);
  if (probe != nullptr) io_uring_free_probe(probe);
  if (!has_fallocate) return Error(ErrorCode::kUnsupported, "the kernel's io_uring has no fallocate (needs Linux 5.6)");
  // Requests that cannot be issued without blocking go to kernel worker
  // threads; unbounded, a deep queue of large O_DIRECT requests spawns dozens
  // of them and they thrash. A few keep the device just as busy.
  unsigned workers[2] = {4, 4};
  (void)io_uring_register_iowq_max_workers(&engine->ring_, workers);
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::from_errno("eventfd");
  engine->notify_.reset(efd);
  err = io_uring_register_eventfd(&engine->ring_, efd);
  if (err < 0) return Error::from_errno("io_uring_register_eventfd", -err);
  // Last: once enabled, the ring takes no further registrations.
  if (engine->restricted_) HV_TRY(restrict_ring(engine->ring_));
  return engine;
}

UringEngine::~UringEngine() {
  if (!ring_ready_) return;
  // Callbacks may reference buffers owned by the caller; finish them before the ring goes.
  while (in_flight_ > 0) reap(true);
  io_uring_queue_exit(&ring_);
}

io_uring_sqe* UringEngine::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // Queue full: hand the batch to the kernel and make room by finishing requests.
    reap(true);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void UringEngine::submit(const IoRequest& request, IoCompletion done) {
  io_uring_sqe* sqe = next_sqe();
  switch (request.op) {
    case IoOp::kRead:
      io_uring_prep_readv(sqe, request.fd, request.iov, static_cast<unsigned>(request.iovcnt), request.offset);
      break;
    case IoOp::kWrite:
      io_uring_prep_writev(sqe, request.fd, request.iov, static_cast<unsigned>(request.iovcnt), request.offset);
      break;
    case IoOp::kFlush: io_uring_prep_fsync(sqe, request.fd, IORING_FSYNC_DATASYNC); break;
    case IoOp::kDiscard:
      io_uring_prep_fallocate(sqe, request.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              static_cast<off_t>(request.offset), static_cast<off_t>(request.length));
      break;
    case IoOp::kZeroRange:
      io_uring_prep_fallocate(sqe, request.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                              static_cast<off_t>(request.offset), static_cast<off_t>(request.length));
      break;
  }
  io_uring_sqe_set_data(sqe, new IoCompletion(std::move(done)));
  ++in_flight_;
  ++unsubmitted_;
  // Reads and writes go to the kernel at once, one per io_uring_enter, as
  // qemu does. Held for the next reap() they went in bursts, and the device
  // ran below the queue depth between bursts (raw 4 KiB random reads: 0.80x
  // of qemu-img batched, 1.0-1.1x submitted at once, for about 1 us of system
  // time per request). io_uring never blocks on them here: it issues them
  // non-blocking or hands them to its workers. Flushes and fallocates, rare
  // and slow, still wait for the next reap().
  if (request.op == IoOp::kRead || request.op == IoOp::kWrite) submit_queued();
}

size_t UringEngine::drain_completions() {
  size_t completed = 0;
  io_uring_cqe* cqe = nullptr;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
    std::unique_ptr<IoCompletion> done(static_cast<IoCompletion*>(io_uring_cqe_get_data(cqe)));
    int64_t res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    --in_flight_;
    ++completed;
    (*done)(res);
  }
  return completed;
}

void UringEngine::submit_queued() {
  if (unsubmitted_ == 0) return;
  int n = io_uring_submit(&ring_);
  if (n > 0) unsubmitted_ -= std::min<size_t>(unsubmitted_, static_cast<size_t>(n));
}

void UringEngine::reap(bool wait) {
  submit_queued();
  // Wait only when nothing completed and the kernel holds requests: a callback
  // may have queued a follow-up (the next step of a chained request), which is
  // progress, and waiting for a request the kernel was never given would block
  // for ever.
  if (drain_completions() == 0 && wait && in_flight_ > unsubmitted_) {
    io_uring_cqe* cqe = nullptr;
    for (;;) {
      int err = io_uring_wait_cqe(&ring_, &cqe);
      if (err == 0 || (err != -EINTR && err != -EAGAIN)) break;
    }
    drain_completions();
  }
  // Follow-up requests queued by callbacks reach the kernel now, not at some
  // later reap() that an event loop waiting for their completion would never make.
  submit_queued();
}

}  // namespace hostvisor::block
