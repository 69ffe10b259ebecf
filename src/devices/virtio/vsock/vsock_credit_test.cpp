// The spec's flow-control arithmetic, including across the counters' wrap.
#include "devices/virtio/vsock/vsock_credit.h"

#include <gtest/gtest.h>

namespace hostvisor::vsock {
namespace {

TEST(VsockCredit, GuestMayFillTheBufferAndNoMore) {
  VsockCredit credit(1000);
  EXPECT_TRUE(credit.receive(600));
  EXPECT_TRUE(credit.receive(400));
  EXPECT_EQ(credit.buffered(), 1000u);
  EXPECT_FALSE(credit.receive(1)) << "beyond the credit";
  EXPECT_EQ(credit.buffered(), 1000u) << "a refused packet is not counted";
  credit.forward(300);
  EXPECT_EQ(credit.fwd_cnt(), 300u);
  EXPECT_FALSE(credit.receive(301));
  EXPECT_TRUE(credit.receive(300));
}

TEST(VsockCredit, UpdateIsDueAfterAQuarterOfTheBufferWasForwarded) {
  VsockCredit credit(1000);
  ASSERT_TRUE(credit.receive(1000));
  credit.forward(249);
  EXPECT_FALSE(credit.update_due());
  credit.forward(1);
  EXPECT_TRUE(credit.update_due());
  credit.announced();
  EXPECT_FALSE(credit.update_due());
}

TEST(VsockCredit, NeverSendsBeyondThePeersBuffer) {
  VsockCredit credit(1000);
  EXPECT_EQ(credit.peer_free(), 0u) << "no credit before the peer said anything";
  credit.peer_update(4096, 0);
  EXPECT_EQ(credit.peer_free(), 4096u);
  credit.sent(4000);
  EXPECT_EQ(credit.peer_free(), 96u);
  credit.peer_update(4096, 1000);
  EXPECT_EQ(credit.peer_free(), 1096u);
  // A peer that shrinks its buffer below what is in flight gets nothing.
  credit.peer_update(2000, 1000);
  EXPECT_EQ(credit.peer_free(), 0u);
  // One that claims to have forwarded more than it got gets nothing either.
  credit.peer_update(4096, 5000);
  EXPECT_EQ(credit.peer_free(), 0u);
}

TEST(VsockCredit, CountersWrapAround) {
  VsockCredit credit(1 << 16);
  credit.peer_update(1 << 16, 0);
  // Drive tx_cnt and fwd_cnt close to 2^32 and across.
  for (int i = 0; i < (1 << 16) + 3; ++i) {
    credit.sent(1 << 16);
    credit.peer_update(1 << 16, credit.tx_cnt());
    ASSERT_TRUE(credit.receive(1 << 16));
    credit.forward(1 << 16);
  }
  EXPECT_LT(credit.tx_cnt(), 1u << 20) << "wrapped";
  EXPECT_EQ(credit.peer_free(), 1u << 16);
  credit.sent(100);
  EXPECT_EQ(credit.peer_free(), (1u << 16) - 100);
  EXPECT_EQ(credit.buffered(), 0u);
  EXPECT_TRUE(credit.receive(1 << 16));
  EXPECT_FALSE(credit.receive(1));
}

}  // namespace
}  // namespace hostvisor::vsock
