#include "cli/balloon_option.h"

#include <gtest/gtest.h>

namespace hostvisor::cli {
namespace {

TEST(BalloonOption, BareOnAndOff) {
  for (const char* text : {"", "on"}) {
    auto config = parse_balloon_option(text);
    ASSERT_TRUE(config.ok()) << text;
    ASSERT_TRUE(config->has_value());
    EXPECT_FALSE((*config)->deflate_on_oom);
    EXPECT_TRUE((*config)->free_page_reporting) << "reporting is on by default";
    EXPECT_EQ((*config)->stats_interval_seconds, 5u);
    EXPECT_EQ((*config)->transport, VirtioTransport::kPci);
  }
  auto off = parse_balloon_option("off");
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->has_value());
}

TEST(BalloonOption, EveryKey) {
  auto config = parse_balloon_option("deflate-on-oom=on,free-page-reporting=off,stats-interval=0,transport=mmio");
  ASSERT_TRUE(config.ok()) << config.error().message();
  ASSERT_TRUE(config->has_value());
  EXPECT_TRUE((*config)->deflate_on_oom);
  EXPECT_FALSE((*config)->free_page_reporting);
  EXPECT_EQ((*config)->stats_interval_seconds, 0u);
  EXPECT_EQ((*config)->transport, VirtioTransport::kMmio);
}

TEST(BalloonOption, BadInputSaysWhatIsExpected) {
  const std::pair<const char*, const char*> cases[] = {
      {"deflate-on-oom=yes", "expected on or off"},
      {"stats-interval=-1", "whole seconds"},
      {"stats-interval=1.5", "whole seconds"},
      {"stats-interval=99999999999", "whole seconds"},
      {"transport=isa", "pci"},
      {"size=1G", "unknown key 'size'"},
      {"deflate-on-oom", "KEY=VALUE"},
      {"deflate-on-oom=on,", "KEY=VALUE"},
      {"deflate-on-oom=on,deflate-on-oom=off", "given twice"},
  };
  for (const auto& [text, expected] : cases) {
    auto config = parse_balloon_option(text);
    ASSERT_FALSE(config.ok()) << text;
    EXPECT_NE(config.error().message().find(expected), std::string::npos) << text << ": " << config.error().message();
    EXPECT_EQ(config.error().message().rfind("--balloon", 0), 0u) << config.error().message();
  }
}

}  // namespace
}  // namespace hostvisor::cli
