#include "net/net_backend_factory.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "base/fd.h"

namespace hostvisor::net {
namespace {

TEST(NetBackendFactory, UserIsANatWithWorkForTheLoop) {
  auto backend = open_net_backend(parse_net_option("user,restrict=on").value());
  ASSERT_TRUE(backend.ok()) << backend.error().message();
  EXPECT_EQ((*backend)->name(), "user");
  EXPECT_GE((*backend)->service_fd(), 0);
  EXPECT_GE((*backend)->receive_fd(), 0);
  ASSERT_TRUE((*backend)->counters().has_value());
  EXPECT_EQ((*backend)->counters()->tx_packets, 0u);
}

TEST(NetBackendFactory, ErrorsSayWhichNetTheyAreAbout) {
  UniqueFd taken(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(taken.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(taken.get(), 1), 0);
  socklen_t length = sizeof address;
  ::getsockname(taken.get(), reinterpret_cast<sockaddr*>(&address), &length);
  const std::string port = std::to_string(ntohs(address.sin_port));

  auto backend = open_net_backend(parse_net_option("user,hostfwd=tcp::" + port + "-:22").value());
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.error().message().rfind("--net user: hostfwd=tcp:127.0.0.1:" + port + "-:22", 0), 0u)
      << backend.error().message();
  EXPECT_FALSE(open_net_backend(NoNetOption{}).ok());
}

}  // namespace
}  // namespace hostvisor::net
