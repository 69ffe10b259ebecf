#include "agent/protocol/frame.h"

#include <gtest/gtest.h>

#include <vector>

#include "agent/protocol/channel.h"

namespace hostvisor::agent::protocol {
namespace {

std::span<const uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

TEST(AgentFrame, JsonAndDataFramesRoundTripEvenAByteAtATime) {
  const std::string wire = encode_json_frame(R"({"op":"ping"})") + encode_data_frame(Stream::kStderr, bytes("abc")) +
                           encode_data_frame(Stream::kStdin, {});
  FrameDecoder decoder;
  std::vector<Frame> frames;
  for (char c : wire) {
    ASSERT_TRUE(decoder.feed(bytes(std::string(1, c))).ok());
    for (;;) {
      auto f = decoder.next();
      ASSERT_TRUE(f.ok()) << f.error().message();
      if (!*f) break;
      frames.push_back(std::move(**f));
    }
  }
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].type, FrameType::kJson);
  EXPECT_EQ(frames[0].payload, R"({"op":"ping"})");
  EXPECT_EQ(frames[1].type, FrameType::kData);
  EXPECT_EQ(frames[1].stream, Stream::kStderr);
  EXPECT_EQ(frames[1].payload, "abc");
  EXPECT_EQ(frames[2].stream, Stream::kStdin);
  EXPECT_TRUE(frames[2].payload.empty());
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(AgentFrame, RefusesOversizedLengthsBeforeBufferingThem) {
  FrameDecoder decoder;
  // A JSON frame one byte over the limit: refused from its header alone.
  const uint32_t length = kMaxJsonPayload + 2;
  const std::string header = {static_cast<char>(length >> 24), static_cast<char>(length >> 16), static_cast<char>(length >> 8),
                              static_cast<char>(length), static_cast<char>(FrameType::kJson)};
  ASSERT_TRUE(decoder.feed(bytes(header)).ok());
  auto f = decoder.next();
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message().find("over the limit"), std::string::npos);
}

TEST(AgentFrame, RefusesZeroLengthUnknownTypeAndUnknownStream) {
  for (const std::string& wire : {std::string("\0\0\0\0\1", 5), std::string("\0\0\0\1\7", 5), std::string("\0\0\0\2\2\5", 6),
                                  std::string("\0\0\0\1\2", 5)}) {
    FrameDecoder decoder;
    ASSERT_TRUE(decoder.feed(bytes(wire)).ok());
    EXPECT_FALSE(decoder.next().ok());
  }
}

TEST(AgentFrame, FeedRefusesMoreThanItsRoom) {
  FrameDecoder decoder;
  std::string big(decoder.room() + 1, 'x');
  EXPECT_FALSE(decoder.feed(bytes(big)).ok());
}

TEST(AgentJson, FieldsAreTypeAndLengthChecked) {
  auto j = parse_object(R"({"s":"abc","n":5,"b":true,"neg":-1})");
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(*string_field(*j, "s"), "abc");
  EXPECT_FALSE(string_field(*j, "s", 2).ok());
  EXPECT_FALSE(string_field(*j, "n").ok());
  EXPECT_FALSE(string_field(*j, "missing").ok());
  EXPECT_EQ(*int_field(*j, "n"), 5);
  EXPECT_FALSE(int_field(*j, "s").ok());
  EXPECT_TRUE(*bool_field(*j, "b"));
  EXPECT_EQ(*optional_int(*j, "absent", 7), 7);
  EXPECT_FALSE(parse_object("[1,2]").ok());
  EXPECT_FALSE(parse_object("{").ok());
}

TEST(AgentJson, ReplyErrorsCarryTheAgentsMessageAndKind) {
  EXPECT_TRUE(check_reply(*parse_object(R"({"ok":true})")).ok());
  auto unsupported = check_reply(*parse_object(R"({"ok":false,"error":"no","code":"unsupported"})"));
  ASSERT_FALSE(unsupported.ok());
  EXPECT_EQ(unsupported.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(unsupported.error().message().find("no"), std::string::npos);
  auto not_found = check_reply(*parse_object(R"({"ok":false,"error":"x","code":"not_found"})"));
  EXPECT_EQ(not_found.error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(check_reply(*parse_object(R"({"ok":"yes"})")).ok());
}

}  // namespace
}  // namespace hostvisor::agent::protocol
