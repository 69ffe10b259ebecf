#include "block/io_engine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "base/fd.h"
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

TEST(IoEngine, ParsesEngineNames) {
  EXPECT_EQ(*parse_engine_kind("io_uring"), EngineKind::kIoUring);
  EXPECT_EQ(*parse_engine_kind("threads"), EngineKind::kThreadPool);
  EXPECT_FALSE(parse_engine_kind("aio").ok());
}

}  // namespace
}  // namespace hostvisor::block
