#include "agent/qga/qga_reply_reader.h"

#include <gtest/gtest.h>

#include "agent/qga/qga_replies.h"

namespace hostvisor::agent::qga {
namespace {

std::span<const uint8_t> as_bytes(const std::string& s) {
  return std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(QgaReplyReader, SkipsToTheSentinelThenSplitsLines) {
  QgaReplyReader reader(1024);
  reader.expect_sentinel();
  const std::string stream = "{\"return\": 5}\n{\"ret\xff{\"return\": 7}\n{\"return\": {}}\n";
  size_t used = 0;
  auto first = reader.feed(as_bytes(stream), used);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(first->has_value());
  EXPECT_TRUE(is_sync_reply(**first, 7)) << "the stale reply before the sentinel was skipped";
  auto second = reader.feed(as_bytes(stream).subspan(used), used);
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((**second)["return"], nlohmann::json::object());
}

TEST(QgaReplyReader, WaitsForTheRestOfAReply) {
  QgaReplyReader reader(1024);
  size_t used = 0;
  auto part = reader.feed(as_bytes("{\"return\""), used);
  ASSERT_TRUE(part.ok());
  EXPECT_FALSE(part->has_value());
  EXPECT_EQ(used, 9u);
  auto rest = reader.feed(as_bytes(": 1}\n"), used);
  ASSERT_TRUE(rest.ok() && rest->has_value());
  EXPECT_EQ((**rest)["return"], 1);
}

TEST(QgaReplyReader, RefusesAReplyOverTheLimitWithoutHoldingIt) {
  QgaReplyReader reader(100);
  size_t used = 0;
  std::string chunk(60, ' ');
  ASSERT_TRUE(reader.feed(as_bytes(chunk), used).ok());
  auto over = reader.feed(as_bytes(chunk), used);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.error().message().find("longer than 100 bytes"), std::string::npos);
  EXPECT_TRUE(reader.awaiting_sentinel()) << "it syncs again before it trusts the stream";
}

TEST(QgaReplyReader, RefusesWhatIsNotAJsonObject) {
  for (const std::string bad : {"[1,2]\n", "{\"return\": \n", "nonsense\n", "\"s\"\n"}) {
    QgaReplyReader reader(1024);
    size_t used = 0;
    EXPECT_FALSE(reader.feed(as_bytes(bad), used).ok()) << bad;
  }
}

TEST(QgaReplies, AgentErrorsBecomeOneLineMessages) {
  auto reply = nlohmann::json::parse(R"({"error": {"class": "GenericError", "desc": "Command guest-exec has been disabled\n\u0007"}})");
  auto got = reply_return(reply);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().message(), "qemu-guest-agent: Command guest-exec has been disabled??");
}

TEST(QgaReplies, ExecStatusIsChecked) {
  auto done = decode_exec_status(nlohmann::json::parse(R"({"return": {"exited": true, "exitcode": 3, "out-data": "aGkK"}})"));
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->exit_code, 3);
  EXPECT_EQ(std::string(done->out.begin(), done->out.end()), "hi\n");
  EXPECT_FALSE(decode_exec_status(nlohmann::json::parse(R"({"return": {"exited": true, "exitcode": 300}})")).ok());
  EXPECT_FALSE(decode_exec_status(nlohmann::json::parse(R"({"return": {"exited": true, "out-data": "!!"}})")).ok());
  EXPECT_FALSE(decode_exec_status(nlohmann::json::parse(R"({"return": {"exited": "yes"}})")).ok());
  auto running = decode_exec_status(nlohmann::json::parse(R"({"return": {"exited": false}})"));
  ASSERT_TRUE(running.ok());
  EXPECT_FALSE(running->exited);
}

TEST(QgaReplies, FileReadMayNotExceedWhatWasAsked) {
  // "hello" is 5 bytes; 4 were asked for.
  EXPECT_FALSE(decode_file_read(nlohmann::json::parse(R"({"return": {"count": 5, "buf-b64": "aGVsbG8=", "eof": false}})"), 4).ok());
  // count must match the data.
  EXPECT_FALSE(decode_file_read(nlohmann::json::parse(R"({"return": {"count": 2, "buf-b64": "aGVsbG8=", "eof": false}})"), 100).ok());
  auto chunk = decode_file_read(nlohmann::json::parse(R"({"return": {"count": 5, "buf-b64": "aGVsbG8=", "eof": true}})"), 100);
  ASSERT_TRUE(chunk.ok());
  EXPECT_TRUE(chunk->eof);
  EXPECT_EQ(chunk->data.size(), 5u);
  EXPECT_FALSE(decode_file_write(nlohmann::json::parse(R"({"return": {"count": 9, "eof": false}})"), 8).ok());
  EXPECT_FALSE(decode_file_handle(nlohmann::json::parse(R"({"return": -1})")).ok());
  EXPECT_FALSE(decode_file_handle(nlohmann::json::parse(R"({"return": 18446744073709551615})")).ok());
  EXPECT_EQ(*decode_file_handle(nlohmann::json::parse(R"({"return": 1000})")), 1000);
}

TEST(QgaReplies, InterfacesAndFilesystems) {
  auto nics = decode_interfaces(nlohmann::json::parse(
      R"({"return": [{"name": "eth0", "hardware-address": "52:54:00:12:34:56",
                      "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "10.0.2.15", "prefix": 24}]}]})"));
  ASSERT_TRUE(nics.ok());
  ASSERT_EQ(nics->size(), 1u);
  EXPECT_EQ((*nics)[0].addresses, std::vector<std::string>{"10.0.2.15/24"});
  EXPECT_FALSE(decode_interfaces(nlohmann::json::parse(
                   R"({"return": [{"name": "eth0", "ip-addresses": [{"ip-address": "x", "prefix": 999}]}]})"))
                   .ok());
  auto fs = decode_filesystems(nlohmann::json::parse(
      R"({"return": [{"name": "vda", "mountpoint": "/", "type": "ext4", "total-bytes": 1000, "used-bytes": 300}]})"));
  ASSERT_TRUE(fs.ok());
  EXPECT_EQ((*fs)[0].free_bytes, 700u);
}

}  // namespace
}  // namespace hostvisor::agent::qga
