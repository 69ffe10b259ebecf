#include "base/progress_line.h"

#include <gtest/gtest.h>

namespace hostvisor {
namespace {

TEST(ProgressLine, SaysThePercentageAndTheSizes) {
  EXPECT_EQ(ProgressLine::format("converting", 0, 100), "converting: 0% (0 bytes of 100 bytes)");
  const std::string half = ProgressLine::format("converting", uint64_t{1} << 30, uint64_t{2} << 30);
  EXPECT_NE(half.find("50%"), std::string::npos) << half;
  EXPECT_NE(ProgressLine::format("x", 5, 5).find("100%"), std::string::npos);
  EXPECT_NE(ProgressLine::format("x", 0, 0).find("100%"), std::string::npos);  // nothing to do is done
}

TEST(ProgressLine, DrawsNothingWhenDisabled) {
  testing::internal::CaptureStderr();
  {
    ProgressLine line("quiet", false);
    line.update(1, 2);
    line.step("a step");
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(ProgressLine, RewritesOneLineAndEndsIt) {
  testing::internal::CaptureStderr();
  {
    ProgressLine line("work", true);
    line.step("one");
    line.update(2, 2);
  }
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(out, "\rwork: one\033[K\rwork: 100% (2 bytes of 2 bytes)\033[K\n");
}

}  // namespace
}  // namespace hostvisor
