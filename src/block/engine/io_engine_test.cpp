#include "block/io_engine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <vector>

#include "base/fd.h"
#include "block/engine/uring_engine.h"
#include "block/testing/scratch_dir.h"

namespace hostvisor::block {
namespace {

class IoEngineTest : public ::testing::TestWithParam<EngineKind> {};

TEST_P(IoEngineTest, ManyRequestsInFlightReadBackWhatWasWritten) {
  testing::ScratchDir dir;
  auto fd = open_file(dir.file("f"), O_RDWR | O_CREAT);
  ASSERT_TRUE(fd.ok());
  auto engine = create_io_engine(GetParam(), 16);
  ASSERT_TRUE(engine.ok()) << engine.error().message();
  IoEngine& e = **engine;
  // More requests than the queue holds, so submission must wait for room.
  constexpr int kBlocks = 100;
  std::vector<std::vector<uint8_t>> data(kBlocks, std::vector<uint8_t>(4096));
  std::vector<iovec> iov(kBlocks);
  int done = 0;
  for (int i = 0; i < kBlocks; ++i) {
    std::memset(data[i].data(), i + 1, 4096);
    iov[i] = {data[i].data(), 4096};
    e.submit({IoOp::kWrite, fd->get(), uint64_t(i) * 4096, &iov[i], 1, 0}, [&](int64_t r) {
      EXPECT_EQ(r, 4096);
      ++done;
    });
  }
  while (e.in_flight() > 0) e.reap(true);
  EXPECT_EQ(done, kBlocks);
  EXPECT_EQ(e.execute({IoOp::kFlush, fd->get(), 0, nullptr, 0, 0}), 0);
  std::vector<uint8_t> back(4096);
  iovec b{back.data(), back.size()};
  EXPECT_EQ(e.execute({IoOp::kRead, fd->get(), 37 * 4096, &b, 1, 0}), 4096);
  EXPECT_EQ(back[0], 38);
  EXPECT_EQ(back[4095], 38);
  // Discard punches a hole that reads back as zeros.
  EXPECT_EQ(e.execute({IoOp::kDiscard, fd->get(), 37 * 4096, nullptr, 0, 4096}), 0);
  EXPECT_EQ(e.execute({IoOp::kRead, fd->get(), 37 * 4096, &b, 1, 0}), 4096);
  EXPECT_EQ(back[100], 0);
  // Errors come back as negative errno.
  EXPECT_EQ(e.execute({IoOp::kRead, -1, 0, &b, 1, 0}), -EBADF);
}

INSTANTIATE_TEST_SUITE_P(Engines, IoEngineTest, ::testing::Values(EngineKind::kIoUring, EngineKind::kThreadPool),
                         [](const auto& info) {
                           return info.param == EngineKind::kIoUring ? "IoUring" : "ThreadPool";
                         });

// The kernel runs a ring's operations without the submitting thread's
// seccomp filter, so the engine's ring takes only what submit() issues.
TEST(UringEngine, TheRingRefusesEveryOperationTheEngineDoesNotIssue) {
  auto engine = UringEngine::create(8);
  ASSERT_TRUE(engine.ok()) << engine.error().message();
  ASSERT_TRUE((*engine)->restricted()) << "this kernel (5.10 and later) can restrict a ring";
  io_uring& ring = (*engine)->ring_for_testing();
  auto submit_one = [&](const std::function<void(io_uring_sqe*)>& prep) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    EXPECT_NE(sqe, nullptr);
    if (sqe == nullptr) return 0;
    prep(sqe);
    io_uring_sqe_set_data(sqe, nullptr);
    EXPECT_EQ(io_uring_submit(&ring), 1);
    io_uring_cqe* cqe = nullptr;
    EXPECT_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
    if (cqe == nullptr) return 0;
    const int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    return res;
  };
  testing::ScratchDir dir;
  const std::string path = dir.file("secret");
  {
    auto created = open_file(path, O_RDWR | O_CREAT);
    ASSERT_TRUE(created.ok());
  }
  EXPECT_EQ(submit_one([&](io_uring_sqe* sqe) { io_uring_prep_openat(sqe, AT_FDCWD, path.c_str(), O_RDONLY, 0); }),
            -EACCES);
  EXPECT_EQ(submit_one([&](io_uring_sqe* sqe) { io_uring_prep_unlinkat(sqe, AT_FDCWD, path.c_str(), 0); }), -EACCES);
  EXPECT_EQ(::access(path.c_str(), F_OK), 0);
  // An allowed opcode with a flag the engine never sets (here: always go to
  // the kernel's workers) is refused too.
  auto fd = open_file(path, O_RDWR);
  ASSERT_TRUE(fd.ok());
  std::vector<uint8_t> buffer(512);
  iovec iov{buffer.data(), buffer.size()};
  EXPECT_EQ(submit_one([&](io_uring_sqe* sqe) {
              io_uring_prep_readv(sqe, fd->get(), &iov, 1, 0);
              sqe->flags |= IOSQE_ASYNC;
            }),
            -EACCES);
  // What the engine issues still works, and nothing more can be registered.
  EXPECT_EQ(submit_one([&](io_uring_sqe* sqe) { io_uring_prep_writev(sqe, fd->get(), &iov, 1, 0); }), 512);
  const int fds[1] = {fd->get()};
  EXPECT_EQ(io_uring_register_files(&ring, fds, 1), -EACCES);
}

TEST(IoEngine, ParsesEngineNames) {
  EXPECT_EQ(*parse_engine_kind("io_uring"), EngineKind::kIoUring);
  EXPECT_EQ(*parse_engine_kind("threads"), EngineKind::kThreadPool);
  EXPECT_FALSE(parse_engine_kind("aio").ok());
}

}  // namespace
}  // namespace hostvisor::block
