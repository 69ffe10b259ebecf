#include "base/size.h"

#include <gtest/gtest.h>

namespace hostvisor {
namespace {

TEST(ParseSize, AcceptsSuffixes) {
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("256M"), 256ull << 20);
  EXPECT_EQ(*parse_size("1G"), 1ull << 30);
  EXPECT_EQ(*parse_size("1g"), 1ull << 30);
  EXPECT_EQ(*parse_size("20GiB"), 20ull << 30);
  EXPECT_EQ(*parse_size("2T"), 2ull << 40);
  EXPECT_EQ(*parse_size("1.5G"), 3ull << 29);
  EXPECT_EQ(*parse_size("512B"), 512u);
}

TEST(ParseSize, RejectsGarbageWithAHelpfulMessage) {
  for (const char* bad : {"", "M", "12Q", "1.5", "-1G", "1GG", "0.1K", "99999999999999999999", "20000000T"}) {
    auto r = parse_size(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) EXPECT_NE(r.error().message().find("512M"), std::string::npos);
  }
}

TEST(FormatSize, ReadsNaturally) {
  EXPECT_EQ(format_size(1ull << 30), "1 GiB");
  EXPECT_EQ(format_size(1536), "1.5 KiB");
  EXPECT_EQ(format_size(12), "12 bytes");
}

}  // namespace
}  // namespace hostvisor
