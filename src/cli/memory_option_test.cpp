#include "cli/memory_option.h"

#include <gtest/gtest.h>

namespace hostvisor::cli {
namespace {

TEST(MemoryOption, SizeAloneMeansTheDefaults) {
  auto m = parse_memory_option("512M");
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->size, 512ull << 20);
  EXPECT_EQ(m->backing, MemoryBackingOptions{});
}

TEST(MemoryOption, TakesEveryOption) {
  auto m = parse_memory_option("2G,hugepages=thp,lock=on,prealloc=on,merge=on");
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->size, 2ull << 30);
  EXPECT_EQ(m->backing, (MemoryBackingOptions{.huge_pages = HugePages::kTransparent,
                                              .lock = true,
                                              .prealloc = true,
                                              .merge = true}));
  auto h = parse_memory_option("1G,shared=on,hugepages=on");
  ASSERT_TRUE(h.ok()) << h.error().message();
  EXPECT_EQ(h->backing, (MemoryBackingOptions{.huge_pages = HugePages::kHugetlb, .shared = true}));
  auto off = parse_memory_option("1G,hugepages=off,lock=off");
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->backing, MemoryBackingOptions{});
}

TEST(MemoryOption, BadInputGetsOneLineNamingTheOption) {
  const struct {
    const char* text;
    const char* says;
  } cases[] = {
      {"", "the size comes first"},
      {",lock=on", "the size comes first"},
      {"lots", "--memory lots: "},
      {"1G,lock", "'lock' is not KEY=VALUE"},
      {"1G,", "'' is not KEY=VALUE"},
      {"1G,lock=yes", "lock=yes: must be on or off"},
      {"1G,hugepages=2M", "hugepages=2M: must be on, thp or off"},
      {"1G,swap=off", "unknown key 'swap'"},
      {"1G,lock=on,lock=off", "lock is given twice"},
      {"1G,merge=on,shared=on", "KSM merges only private anonymous memory"},
      {"1G,merge=on,hugepages=on", "KSM does not merge hugetlbfs pages"},
      {"1025M,hugepages=on", "multiple of 2 MiB"},
  };
  for (const auto& c : cases) {
    auto m = parse_memory_option(c.text);
    ASSERT_FALSE(m.ok()) << c.text;
    const std::string& message = m.error().message();
    EXPECT_EQ(message.rfind(std::string("--memory ") + c.text + ": ", 0), 0u) << message;
    EXPECT_NE(message.find(c.says), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace hostvisor::cli
