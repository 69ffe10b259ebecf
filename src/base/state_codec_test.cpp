#include "base/state_codec.h"

#include <gtest/gtest.h>

namespace hostvisor {
namespace {

TEST(StateCodec, RoundTripsEveryFieldKind) {
  StateWriter writer;
  writer.put<uint8_t>(0xab);
  writer.put<uint32_t>(0x12345678);
  writer.put<int64_t>(-5);
  writer.put_bool(true);
  writer.put_string("vcpu");
  const uint8_t raw[3] = {1, 2, 3};
  writer.put_raw(raw);

  StateReader reader(writer.bytes(), "test");
  EXPECT_EQ(reader.get<uint8_t>(), 0xab);
  EXPECT_EQ(reader.get<uint32_t>(), 0x12345678u);
  EXPECT_EQ(reader.get<int64_t>(), -5);
  EXPECT_TRUE(reader.get_bool());
  EXPECT_EQ(reader.get_string(16), "vcpu");
  uint8_t back[3] = {};
  reader.get_raw(back);
  EXPECT_EQ(back[2], 3);
  EXPECT_TRUE(reader.finish().ok());
}

TEST(StateCodec, TruncationIsStickyAndNamesTheRecord) {
  StateWriter writer;
  writer.put<uint16_t>(7);
  StateReader reader(writer.bytes(), "pit");
  EXPECT_EQ(reader.get<uint64_t>(), 0u);
  EXPECT_EQ(reader.get<uint8_t>(), 0u);  // stays failed even though a byte is left
  auto done = reader.finish();
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(done.error().message().find("pit: truncated"), std::string::npos);
}

TEST(StateCodec, RefusesOverlongBytesBadBooleansAndTrailingBytes) {
  StateWriter big;
  big.put_bytes(std::vector<uint8_t>(100, 0));
  StateReader too_long(big.bytes(), "r");
  too_long.get_bytes(99);
  EXPECT_FALSE(too_long.finish().ok());

  StateWriter boolean;
  boolean.put<uint8_t>(2);
  StateReader bad_bool(boolean.bytes(), "r");
  bad_bool.get_bool();
  EXPECT_FALSE(bad_bool.finish().ok());

  StateWriter extra;
  extra.put<uint16_t>(1);
  StateReader trailing(extra.bytes(), "r");
  trailing.get<uint8_t>();
  EXPECT_NE(trailing.finish().error().message().find("unexpected bytes"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor
