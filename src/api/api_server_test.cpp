// The API server's WebSocket bridges against a client that does not read.
#include "api/api_server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <thread>

#include "api/testing/recording_service.h"

namespace hostvisor::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using namespace std::chrono_literals;

// A command that prints 16 MiB as fast as it can, as `yes` in the guest would.
class FloodingService : public testing::RecordingService {
 public:
  static constexpr size_t kChunk = 64 * 1024;
  static constexpr size_t kChunks = 256;
  std::atomic<uint64_t> produced{0};

  Result<nlohmann::json> exec_stream(const std::string&, ExecStream& stream) override {
    const std::vector<uint8_t> chunk(kChunk, 'y');
    for (size_t i = 0; i < kChunks; ++i) {
      stream.on_output(1, chunk);
      produced += chunk.size();
    }
    return nlohmann::json{{"exit_code", 0}};
  }
};

TEST(ExecBridge, AClientThatDoesNotReadHoldsTheCommandBackInsteadOfGrowingMemory) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  FloodingService service;
  std::thread server([&] { serve_unix_connection(fds[0], service, ConnectionOptions{}); });

  asio::io_context ioc;
  websocket::stream<asio::local::stream_protocol::socket> ws(ioc);
  ws.next_layer().assign(asio::local::stream_protocol(), fds[1]);
  ws.read_message_max(1 << 20);
  ws.handshake("localhost", "/v1/vms/dev/exec");
  ws.text(true);
  ws.write(asio::buffer(std::string(R"({"argv":["yes"]})")));

  // Not reading: the server may hold a bounded backlog (its queue, the
  // socket's buffers), never the whole output.
  std::this_thread::sleep_for(1500ms);
  const uint64_t while_stalled = service.produced.load();
  EXPECT_LT(while_stalled, uint64_t{4} << 20) << "the bridge queued output the client never read";

  // Reading again: every byte arrives, in order, then the result.
  uint64_t received = 0;
  std::string result;
  for (;;) {
    beast::flat_buffer message;
    ws.read(message);
    const std::string data = beast::buffers_to_string(message.data());
    if (ws.got_text()) {
      result = data;
      break;
    }
    ASSERT_FALSE(data.empty());
    ASSERT_EQ(data[0], 1) << "stdout";
    ASSERT_EQ(data.find_first_not_of('y', 1), std::string::npos);
    received += data.size() - 1;
  }
  EXPECT_EQ(received, FloodingService::kChunk * FloodingService::kChunks);
  EXPECT_NE(result.find("exit_code"), std::string::npos) << result;
  beast::error_code ec;
  ws.close(websocket::close_code::normal, ec);
  server.join();
}

TEST(ExecBridge, AClientThatLeavesUnblocksTheCommand) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  FloodingService service;
  std::thread server([&] { serve_unix_connection(fds[0], service, ConnectionOptions{}); });
  {
    asio::io_context ioc;
    websocket::stream<asio::local::stream_protocol::socket> ws(ioc);
    ws.next_layer().assign(asio::local::stream_protocol(), fds[1]);
    ws.handshake("localhost", "/v1/vms/dev/exec");
    ws.text(true);
    ws.write(asio::buffer(std::string(R"({"argv":["yes"]})")));
    std::this_thread::sleep_for(500ms);
  }               // the client goes away without reading
  server.join();  // would hang if the command's thread stayed blocked on a full queue
  EXPECT_EQ(service.produced.load(), FloodingService::kChunk * FloodingService::kChunks);
}

}  // namespace
}  // namespace hostvisor::api
