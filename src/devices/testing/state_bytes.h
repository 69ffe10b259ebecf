// Sends a device State through its snapshot encoding (encode_state, then
// decode_state), so save/restore tests cover the bytes a snapshot holds;
// also checks that every truncation of those bytes is refused.
#pragma once

#include <gtest/gtest.h>

#include <span>
#include <vector>

#include "base/state_codec.h"

namespace hostvisor::testing {

template <typename Device>
typename Device::State through_state_bytes(const typename Device::State& state) {
  StateWriter out;
  Device::encode_state(out, state);
  const std::vector<uint8_t> bytes = out.take();
  for (size_t length = 0; length < bytes.size(); ++length) {
    StateReader truncated(std::span(bytes).first(length), "truncated state");
    (void)Device::decode_state(truncated);
    EXPECT_FALSE(truncated.finish().ok()) << "a state cut to " << length << " of " << bytes.size() << " bytes";
  }
  StateReader in(bytes, "state");
  typename Device::State decoded = Device::decode_state(in);
  auto finished = in.finish();
  EXPECT_TRUE(finished.ok()) << finished.error().message();
  StateWriter again;
  Device::encode_state(again, decoded);
  EXPECT_EQ(again.bytes(), bytes) << "decoding and encoding again changed the state";
  return decoded;
}

}  // namespace hostvisor::testing
