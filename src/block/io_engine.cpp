#include "block/io_engine.h"

#include "base/log.h"
#include "block/engine/thread_pool_engine.h"
#include "block/engine/uring_engine.h"

namespace hostvisor::block {

const char* engine_kind_name(EngineKind kind) {
  switch (kind) {
    case EngineKind::kAuto: return "auto";
    case EngineKind::kIoUring: return "io_uring";
    case EngineKind::kThreadPool: return "threads";
  }
  return "?";
}

Result<EngineKind> parse_engine_kind(const std::string& text) {
  if (text == "auto") return EngineKind::kAuto;
  if (text == "io_uring" || text == "uring") return EngineKind::kIoUring;
  if (text == "threads" || text == "thread-pool") return EngineKind::kThreadPool;
  return Error(ErrorCode::kInvalidArgument, "unknown I/O engine '" + text + "' (use auto, io_uring or threads)");
}

int64_t IoEngine::execute(const IoRequest& request) {
  bool finished = false;
  int64_t result = 0;
  submit(request, [&](int64_t r) {
    result = r;
    finished = true;
  });
  while (!finished) reap(true);
  return result;
}

Result<std::unique_ptr<IoEngine>> create_io_engine(EngineKind kind, unsigned queue_depth) {
  if (kind == EngineKind::kIoUring || kind == EngineKind::kAuto) {
    auto uring = UringEngine::create(queue_depth);
    if (uring.ok()) return std::unique_ptr<IoEngine>(std::move(uring).value());
    if (kind == EngineKind::kIoUring) {
      return uring.error().with_context("io_uring engine unavailable (use the thread-pool engine instead)");
    }
    HV_LOG_INFO("io_uring unavailable ({}); using the thread-pool engine", uring.error().message());
  }
  // A few threads keep a queue of small requests moving without swamping the host.
  auto pool = HV_TRY(ThreadPoolEngine::create(std::min(queue_depth, 8u)));
  return std::unique_ptr<IoEngine>(std::move(pool));
}

}  // namespace hostvisor::block
