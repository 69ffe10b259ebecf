#include "block/disk_option.h"

#include <gtest/gtest.h>

namespace hostvisor::block {
namespace {

TEST(DiskOption, ParsesAllKeys) {
  auto d = parse_disk_option("root.qcow2,format=qcow2,cache=none,readonly=on,discard=on");
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(d->path, "root.qcow2");
  EXPECT_EQ(d->format, ImageFormat::kQcow2);
  EXPECT_EQ(d->cache, CacheMode::kNone);
  EXPECT_TRUE(d->read_only);
  EXPECT_TRUE(d->discard);
  EXPECT_FALSE(d->open_options().writable);
  EXPECT_EQ(d->serial, "");
  auto named = parse_disk_option("data.qcow2,serial=hostvisor-data");
  ASSERT_TRUE(named.ok()) << named.error().message();
  EXPECT_EQ(named->serial, "hostvisor-data");
}

TEST(DiskOption, DefaultsAndEscapedComma) {
  auto d = parse_disk_option("my,,disk.img");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->path, "my,disk.img");
  EXPECT_EQ(d->format, ImageFormat::kProbe);
  EXPECT_EQ(d->cache, CacheMode::kWriteback);
  EXPECT_FALSE(d->read_only);
  EXPECT_TRUE(d->open_options().writable);
}

TEST(DiskOption, RejectsBadInputWithReasons) {
  auto e1 = parse_disk_option("d.img,cache=fast");
  ASSERT_FALSE(e1.ok());
  EXPECT_NE(e1.error().message().find("cache mode 'fast'"), std::string::npos);
  auto e2 = parse_disk_option("d.img,bogus=1");
  ASSERT_FALSE(e2.ok());
  EXPECT_NE(e2.error().message().find("unknown option 'bogus'"), std::string::npos);
  EXPECT_FALSE(parse_disk_option("").ok());
  EXPECT_FALSE(parse_disk_option("d.img,readonly").ok());
  EXPECT_FALSE(parse_disk_option("d.img,readonly=maybe").ok());
  EXPECT_FALSE(parse_disk_option("d.img,format=vmdk").ok());
  for (const char* bad : {"d.img,serial=", "d.img,serial=has space", "d.img,serial=123456789012345678901"}) {
    auto e = parse_disk_option(bad);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_NE(e.error().message().find("serial"), std::string::npos);
  }
}

}  // namespace
}  // namespace hostvisor::block
