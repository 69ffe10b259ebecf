// io_uring engine: one ring per engine. Reads and writes go to the kernel as
// they are submitted (see submit() for why not in batches); flushes and
// fallocates are batched until reap().
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

 private:
  UringEngine() = default;
  // Runs the callbacks of finished requests; returns how many.
  size_t drain_completions();
  void submit_queued();
  io_uring_sqe* next_sqe();

  io_uring ring_{};
  bool ring_ready_ = false;
  UniqueFd notify_;
  size_t in_flight_ = 0;
  size_t unsubmitted_ = 0;
};

}  // namespace hostvisor::block
