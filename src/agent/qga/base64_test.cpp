#include "agent/qga/base64.h"

#include <gtest/gtest.h>

namespace hostvisor::agent::qga {
namespace {

std::vector<uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

TEST(Base64, EncodesRfc4648Vectors) {
  EXPECT_EQ(base64_encode(bytes("")), "");
  EXPECT_EQ(base64_encode(bytes("f")), "Zg==");
  EXPECT_EQ(base64_encode(bytes("fo")), "Zm8=");
  EXPECT_EQ(base64_encode(bytes("foo")), "Zm9v");
  EXPECT_EQ(base64_encode(bytes("foobar")), "Zm9vYmFy");
}

TEST(Base64, RoundTripsEveryByte) {
  std::vector<uint8_t> all;
  for (int i = 0; i < 256 * 3 + 1; ++i) all.push_back(static_cast<uint8_t>(i * 7));
  EXPECT_EQ(base64_decode(base64_encode(all)), all);
}

TEST(Base64, RefusesWhatIsNotBase64) {
  EXPECT_FALSE(base64_decode("Zg="));    // length
  EXPECT_FALSE(base64_decode("Z?=="));   // alphabet
  EXPECT_FALSE(base64_decode("Zg==Zg==")); // padding in the middle
  EXPECT_FALSE(base64_decode("Z=g="));   // padding before data
  EXPECT_FALSE(base64_decode("===="));
  EXPECT_EQ(base64_decode("Zm8="), bytes("fo"));
}

}  // namespace
}  // namespace hostvisor::agent::qga
