#include "devices/virtio/vsock/vsock_connect_line.h"

#include <gtest/gtest.h>

namespace hostvisor::vsock {
namespace {

TEST(VsockConnectLine, ParsesThePortAndTheLineLength) {
  auto line = parse_connect_line("CONNECT 1024\nhello");
  ASSERT_TRUE(line.ok());
  ASSERT_TRUE(line->has_value());
  EXPECT_EQ((*line)->port, 1024u);
  EXPECT_EQ((*line)->length, 13u);
  line = parse_connect_line("CONNECT 4294967295\r\n");
  ASSERT_TRUE(line.ok() && line->has_value());
  EXPECT_EQ((*line)->port, 4294967295u);
  EXPECT_EQ((*line)->length, 20u);
}

TEST(VsockConnectLine, WaitsForTheNewline) {
  auto line = parse_connect_line("CONNECT 10");
  ASSERT_TRUE(line.ok());
  EXPECT_FALSE(line->has_value());
  line = parse_connect_line("");
  ASSERT_TRUE(line.ok());
  EXPECT_FALSE(line->has_value());
}

TEST(VsockConnectLine, RefusesAnythingElse) {
  for (const char* bad : {"CONNECT\n", "CONNECT \n", "CONNECT 4294967296\n", "CONNECT 12345678901\n", "connect 5\n",
                          "CONNECT -1\n", "CONNECT 1 2\n", "GET / HTTP/1.0\n", "CONNECT 0x10\n", "\n"}) {
    auto line = parse_connect_line(bad);
    EXPECT_FALSE(line.ok()) << bad;
  }
  // No newline within the limit: not the protocol.
  auto line = parse_connect_line(std::string(kMaxConnectLine, '1'));
  ASSERT_FALSE(line.ok());
  EXPECT_NE(line.error().message().find("no newline"), std::string::npos);
}

TEST(VsockConnectLine, OkLine) { EXPECT_EQ(ok_line(1073741824), "OK 1073741824\n"); }

}  // namespace
}  // namespace hostvisor::vsock
