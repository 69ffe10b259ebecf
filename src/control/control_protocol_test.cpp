#include "control/control_protocol.h"

#include <gtest/gtest.h>

namespace hostvisor::control {
namespace {

TEST(ControlProtocol, ParsesARequestWithItsArguments) {
  auto request = parse_request(R"({"id": 7, "op": "snapshot", "dir": "/x", "quit": true})");
  ASSERT_TRUE(request) << request.error().message();
  EXPECT_EQ(request->id, 7);
  EXPECT_EQ(request->op, "snapshot");
  EXPECT_EQ(*string_arg(request->args, "dir"), "/x");
  EXPECT_TRUE(*bool_arg(request->args, "quit"));
}

TEST(ControlProtocol, RefusesWhatIsNotARequest) {
  EXPECT_FALSE(parse_request("{not json"));
  EXPECT_FALSE(parse_request("[1,2]"));
  EXPECT_FALSE(parse_request(R"({"id": 1})"));
  EXPECT_FALSE(parse_request(R"({"id": 1, "op": 5})"));
  json id;
  auto bad = parse_request(R"({"id": "a", "op": 5})", &id);
  ASSERT_FALSE(bad);
  EXPECT_EQ(id, "a");  // the error reply still answers the request's id
  EXPECT_NE(bad.error().message().find("\"op\""), std::string::npos);
  EXPECT_FALSE(parse_request(R"({"id": [1], "op": "info"})"));
}

TEST(ControlProtocol, ArgumentsAreTypeChecked) {
  const json args = json::parse(R"({"n": -1, "s": 3, "b": "yes", "u": 9})");
  EXPECT_FALSE(uint_arg(args, "n"));
  EXPECT_FALSE(string_arg(args, "s"));
  EXPECT_FALSE(bool_arg(args, "b"));
  EXPECT_EQ(*uint_arg(args, "u"), 9u);
  EXPECT_EQ(*uint_arg(args, "missing", 4), 4u);
  auto missing = uint_arg(args, "missing");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message(), "missing argument \"missing\"");
}

TEST(ControlProtocol, RepliesAreOneLineEach) {
  const std::string okline = ok_reply(3, {{"a", 1}});
  EXPECT_EQ(okline, "{\"id\":3,\"ok\":true,\"result\":{\"a\":1}}\n");
  EXPECT_EQ(ok_reply(nullptr, nullptr), "{\"id\":null,\"ok\":true,\"result\":{}}\n");
  const json error = json::parse(error_reply("x", WireError::kBusy, "later"));
  EXPECT_EQ(error["error"]["code"], "busy");
  EXPECT_EQ(error["error"]["message"], "later");
  // Invalid UTF-8 (a path) is replaced, not thrown on.
  EXPECT_NO_THROW(ok_reply(1, {{"p", std::string("\xff\xfe")}}));
}

TEST(ControlProtocol, WireErrorsRoundTrip) {
  for (WireError code : {WireError::kInvalidArgument, WireError::kNotSupported, WireError::kBusy, WireError::kFailed})
    EXPECT_EQ(parse_wire_error(wire_error_name(code)), code);
  EXPECT_FALSE(parse_wire_error("nope"));
  EXPECT_EQ(wire_error_for(ErrorCode::kUnsupported), WireError::kNotSupported);
  EXPECT_EQ(error_code_for(WireError::kBusy), ErrorCode::kBusy);
}

TEST(LineSplitter, SplitsAndBoundsLines) {
  LineSplitter lines;
  std::string line;
  lines.feed("ab");
  EXPECT_EQ(lines.next(line), LineSplitter::Status::kNeedMore);
  lines.feed("c\nde\nf");
  ASSERT_EQ(lines.next(line), LineSplitter::Status::kLine);
  EXPECT_EQ(line, "abc");
  ASSERT_EQ(lines.next(line), LineSplitter::Status::kLine);
  EXPECT_EQ(line, "de");
  EXPECT_EQ(lines.next(line), LineSplitter::Status::kNeedMore);
  EXPECT_EQ(lines.take_rest(), "f");

  LineSplitter longer;
  longer.feed(std::string(kMaxLineBytes - 1, 'x') + "\n");  // exactly the limit with its newline
  EXPECT_EQ(longer.next(line), LineSplitter::Status::kLine);
  longer.feed(std::string(kMaxLineBytes, 'x'));  // no newline can end it within the limit
  EXPECT_EQ(longer.next(line), LineSplitter::Status::kTooLong);
}

}  // namespace
}  // namespace hostvisor::control
