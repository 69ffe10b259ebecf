// The API server's WebSocket bridges against a client that does not read.
#include "api/api_server.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <functional>
#include <system_error>
#include <thread>
#include <vector>

#include "api/testing/recording_service.h"

namespace hostvisor::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using namespace std::chrono_literals;

// One API connection served by serve_unix_connection() on a thread of its
// own, over a socketpair; the test holds the client's end. The destructor
// joins the server, which ends once the client's end is closed.
class ServedConnection {
 public:
  explicit ServedConnection(VmService& service) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
      throw std::system_error(errno, std::generic_category(), "socketpair");
    client_ = fds[1];
    server_ = std::thread([&service, fd = fds[0]] { serve_unix_connection(fd, service, ConnectionOptions{}); });
  }
  ~ServedConnection() { join(); }
  int client() const { return client_; }
  void join() {
    if (server_.joinable()) server_.join();
  }

 private:
  int client_ = -1;
  std::thread server_;
};

using WebSocket = websocket::stream<asio::local::stream_protocol::socket>;

// The client's end of `connection`, taken over by `ws`.
void attach(WebSocket& ws, const ServedConnection& connection) {
  ws.next_layer().assign(asio::local::stream_protocol(), connection.client());
}

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
  FloodingService service;
  ServedConnection connection(service);

  asio::io_context ioc;
  WebSocket ws(ioc);
  attach(ws, connection);
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
  connection.join();
}

TEST(ExecBridge, AClientThatLeavesUnblocksTheCommand) {
  FloodingService service;
  ServedConnection connection(service);
  {
    asio::io_context ioc;
    WebSocket ws(ioc);
    attach(ws, connection);
    ws.handshake("localhost", "/v1/vms/dev/exec");
    ws.text(true);
    ws.write(asio::buffer(std::string(R"({"argv":["yes"]})")));
    std::this_thread::sleep_for(500ms);
  }                   // the client goes away without reading
  connection.join();  // would hang if the command's thread stayed blocked on a full queue
  EXPECT_EQ(service.produced.load(), FloodingService::kChunk * FloodingService::kChunks);
}

// A VM console that never reads its input (a guest that stopped reading its
// UART): the test holds the console's far end and reads it only at the end.
class StalledConsoleService : public testing::RecordingService {
 public:
  StalledConsoleService() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    bridge_end = UniqueFd(fds[0]);
    guest_end = UniqueFd(fds[1]);
    // Small socket buffers: the console is full after a few KiB.
    const int small = 4096;
    ::setsockopt(bridge_end.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    ::setsockopt(guest_end.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  }
  Result<UniqueFd> attach_console(const std::string&) override { return std::move(bridge_end); }

  UniqueFd bridge_end;
  UniqueFd guest_end;
};

std::vector<uint8_t> read_available(int fd, int wait_ms) {
  std::vector<uint8_t> all;
  uint8_t buf[65536];
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, wait_ms) == 1) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    all.insert(all.end(), buf, buf + n);
  }
  return all;
}

TEST(ConsoleBridge, AConsoleThatDoesNotReadNeverStallsTheBridgeAndHoldsBoundedInput) {
  constexpr size_t kMessage = 16 * 1024;
  constexpr size_t kMessages = 64;  // 1 MiB of input, far more than the console and the bridge hold
  ::signal(SIGPIPE, SIG_IGN);       // as the daemon, which serves the web console, does
  StalledConsoleService service;
  ServedConnection connection(service);

  asio::io_context ioc;
  WebSocket ws(ioc);
  attach(ws, connection);
  ws.handshake("localhost", "/v1/vms/dev/console");
  ws.binary(true);

  // The client types 1 MiB (each message a byte of its own), asynchronously:
  // a bridge that waited for the console would stop reading the WebSocket
  // and these writes would never finish.
  std::vector<std::string> messages;
  for (size_t i = 0; i < kMessages; ++i) messages.emplace_back(kMessage, static_cast<char>(1 + i));
  size_t sent = 0;
  std::function<void()> send_next = [&] {
    if (sent == kMessages) return;
    ws.async_write(asio::buffer(messages[sent]), [&](beast::error_code ec, size_t) {
      ASSERT_FALSE(ec) << ec.message();
      ++sent;
      send_next();
    });
  };
  send_next();
  ioc.run_for(10s);
  if (sent != kMessages) {
    // The bridge is stuck writing to the console: end it and fail.
    service.guest_end.reset();
    ws.next_layer().close();
    connection.join();
    FAIL() << "the bridge stopped reading the client while the console was full (" << sent << " messages sent)";
  }

  // The guest's output still reaches the client while its input is stalled.
  const std::string output = "output while the input waits\n";
  ASSERT_EQ(::write(service.guest_end.get(), output.data(), output.size()), static_cast<ssize_t>(output.size()));
  beast::flat_buffer got;
  bool read_done = false;
  ws.async_read(got, [&](beast::error_code ec, size_t) { read_done = !ec; });
  ioc.restart();
  ioc.run_for(5s);
  EXPECT_TRUE(read_done) << "the guest's output did not reach the client";
  if (read_done) EXPECT_EQ(beast::buffers_to_string(got.data()), output);

  // Another client is served meanwhile.
  {
    ServedConnection other(service);
    const std::string request = "GET /v1/vms HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    ASSERT_EQ(::write(other.client(), request.data(), request.size()), static_cast<ssize_t>(request.size()));
    const std::vector<uint8_t> answer = read_available(other.client(), 5000);
    EXPECT_EQ(std::string(answer.begin(), answer.end()).rfind("HTTP/1.1 200", 0), 0u);
    ::close(other.client());
    other.join();
  }

  // What the console gets when it reads again: whole messages, in the order
  // typed, at most what the socket and the bridge's bound held; the rest was
  // dropped, not queued.
  const std::vector<uint8_t> typed = read_available(service.guest_end.get(), 500);
  ASSERT_FALSE(typed.empty());
  EXPECT_LT(typed.size(), kMessages * kMessage);
  EXPECT_LE(typed.size(), size_t{256} << 10);
  uint8_t previous = 0;
  for (size_t i = 0; i < typed.size(); i += kMessage) {
    ASSERT_LE(i + kMessage, typed.size()) << "a message was cut";
    const uint8_t c = typed[i];
    EXPECT_TRUE(std::all_of(typed.begin() + i, typed.begin() + i + kMessage, [&](uint8_t b) { return b == c; }));
    if (i > 0) EXPECT_GT(c, previous) << "out of order";
    previous = c;
  }

  // With the console reading again, typing flows again.
  const std::string after = "after";
  ws.write(asio::buffer(after));
  const std::vector<uint8_t> later = read_available(service.guest_end.get(), 2000);
  EXPECT_EQ(std::string(later.begin(), later.end()), after);
  // A paste larger than the bound goes whole when nothing waits.
  const std::string paste(100 * 1024, 'p');
  ws.write(asio::buffer(paste));
  const std::vector<uint8_t> pasted = read_available(service.guest_end.get(), 2000);
  EXPECT_EQ(std::string(pasted.begin(), pasted.end()), paste);

  beast::error_code ec;
  ws.close(websocket::close_code::normal, ec);
  service.guest_end.reset();  // ends a bridge that is stuck writing (the bug), so the test cannot hang
  connection.join();
}

}  // namespace
}  // namespace hostvisor::api
