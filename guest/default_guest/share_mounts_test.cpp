#include "guest/default_guest/share_mounts.h"

#include <gtest/gtest.h>

namespace hostvisor::guest {
namespace {

TEST(ShareMounts, EncodesTagsAndGuestPaths) {
  EXPECT_EQ(share_mounts_cmdline_parameter({}), "");
  EXPECT_EQ(share_mounts_cmdline_parameter({{"a", ""}}), "hostvisor.shares=a");
  EXPECT_EQ(share_mounts_cmdline_parameter({{"a", ""}, {"work", "/home/u/proj"}}),
            "hostvisor.shares=a,work:/home/u/proj");
}

TEST(ShareMounts, AcceptsOrdinaryAbsolutePaths) {
  for (const char* path : {"/home/u/proj", "/data-2/x_y.z", "/a", "/tmp/hv-cli-test.AbC123/dir"})
    EXPECT_TRUE(check_guest_mount_path(path).ok()) << path;
}

TEST(ShareMounts, RefusesWhatTheEncodingCannotCarry) {
  for (const char* path : {"", "relative/path", "/", "/a,b", "/a:b", "/a b", "/tab\there", "/new\nline", "/q\"uote",
                           "/it's", "/back\\slash", "/glob*", "/what?", "/[x]", "/\x7f", "/caf\xc3\xa9"}) {
    auto checked = check_guest_mount_path(path);
    ASSERT_FALSE(checked.ok()) << path;
    EXPECT_EQ(checked.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(checked.error().message().find("mount="), std::string::npos);
  }
  EXPECT_FALSE(check_guest_mount_path("/" + std::string(200, 'x')).ok());
  EXPECT_TRUE(check_guest_mount_path("/" + std::string(199, 'x')).ok());
}

}  // namespace
}  // namespace hostvisor::guest
