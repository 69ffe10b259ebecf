// io_uring engine: one ring per engine. Reads and writes go to the kernel as
// they are submitted (see submit() for why not in batches); flushes and
// fallocates are batched until reap(). The ring is restricted to the
// operations submit() issues (IORING_REGISTER_RESTRICTIONS) where the kernel
// can, since the kernel runs them without passing the thread's seccomp filter.
#pragma once

#include <liburing.h>

#include <memory>

#include "base/fd.h"
#include "block/io_engine.h"

namespace hostvisor::block {

class UringEngine final : public IoEngine {
 public:
  static Result<std::unique_ptr<UringEngine>> create(unsigned queue_depth);
  ~UringEngine() override;

  const char* name() const override { return "io_uring"; }
  void submit(const IoRequest& request, IoCompletion done) override;
  void reap(bool wait) override;
  size_t in_flight() const override { return in_flight_; }
  int notify_fd() const override { return notify_.get(); }
  // Whether the kernel holds the ring to submit()'s operations.
  bool restricted() const { return restricted_; }
  // The ring itself, for the test that submits what submit() never would.
  io_uring& ring_for_testing() { return ring_; }

 private:
  UringEngine() = default;
  // Runs the callbacks of finished requests; returns how many.
  size_t drain_completions();
  void submit_queued();
  io_uring_sqe* next_sqe();

  io_uring ring_{};
  bool ring_ready_ = false;
  bool restricted_ = false;
  UniqueFd notify_;
  size_t in_flight_ = 0;
  size_t unsubmitted_ = 0;
};

}  // namespace hostvisor::block
