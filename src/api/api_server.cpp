#include "api/api_server.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "api/router.h"
#include "base/log.h"
#include "base/log_rate_limit.h"
#include "base/size.h"

namespace hostvisor::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using UnixSocket = asio::local::stream_protocol::socket;
using TcpSocket = asio::ip::tcp::socket;

namespace {

constexpr int kMaxConnections = 512;
std::atomic<int> g_connections{0};

bool peer_is_us(int fd) {
  ucred cred{};
  socklen_t length = sizeof(cred);
  return ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0 && cred.uid == ::geteuid();
}

template <typename Body>
void set_common(http::response<Body>& response, unsigned version, bool keep_alive, const ConnectionOptions& options) {
  response.version(version);
  response.set(http::field::server, "hostvisor");
  for (const auto& [field, value] : options.headers) response.set(field, value);
  response.keep_alive(keep_alive);
}

// The same connection, now driven by `ioc`: the bridges below run both
// directions on an io_context of their own.
template <typename Socket>
Socket adopt(asio::io_context& ioc, Socket& socket) {
  beast::error_code ec;
  const auto protocol = socket.local_endpoint(ec).protocol();
  return Socket(ioc, protocol, socket.release());
}

// /v1/events: the response stays open and carries one JSON object per line,
// chunked; an empty line every 15 s finds a client that went away.
template <typename Socket>
void stream_events(Socket& socket, VmService& service, unsigned version, const ConnectionOptions& options) {
  auto queue = service.events().subscribe();
  http::response<http::empty_body> response{http::status::ok, version};
  set_common(response, version, false, options);
  response.set(http::field::content_type, "application/x-ndjson");
  response.set(http::field::cache_control, "no-cache");
  response.chunked(true);
  http::response_serializer<http::empty_body> serializer{response};
  beast::error_code ec;
  http::write_header(socket, serializer, ec);
  while (!ec) {
    auto event = queue->next(std::chrono::seconds(15));
    const std::string line =
        event ? event->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n" : std::string("\n");
    asio::write(socket, http::make_chunk(asio::buffer(line)), ec);
  }
  service.events().unsubscribe(queue);
}

// /v1/vms/NAME/console: the WebSocket carries the console both ways (binary
// messages out, any message in); one thread runs both directions on its own
// io_context, so the guest's output and the client's keys never wait on
// each other. Neither direction blocks that thread: a client that does not
// read loses the oldest output (kMaxQueuedOutputMessages wait), and input a
// console that does not read leaves waiting is bounded to kMaxQueuedInput
// bytes (or one message, when a larger one comes with nothing waiting); a
// message that does not fit is dropped whole (counted, logged rate-limited),
// as a UART drops what overruns its FIFO. The WebSocket is read on all the
// while, so a client that leaves is noticed at once.
template <typename Socket>
class ConsoleBridge {
 public:
  static constexpr size_t kMaxQueuedOutputMessages = 256;
  static constexpr size_t kMaxQueuedInput = 64 * 1024;

  ConsoleBridge(Socket socket, UniqueFd console, uint64_t max_message)
      : ws_(adopt(ioc_, socket)), console_(ioc_, console.release()) {
    ws_.read_message_max(max_message);
  }
  ~ConsoleBridge() {
    if (dropped_input_ > 0)
      HV_LOG_INFO("web console: {} bytes of input were dropped while the console did not read", dropped_input_);
  }

  void run(const http::request<http::string_body>& request) {
    beast::error_code ec;
    ws_.binary(true);
    ws_.accept(request, ec);
    if (ec) return;
    read_console();
    read_socket();
    ioc_.run();
  }

 private:
  void read_console() {
    console_.async_read_some(asio::buffer(console_buffer_), [this](beast::error_code ec, size_t n) {
      if (ec) return close();
      outgoing_.emplace_back(console_buffer_.data(), n);
      if (outgoing_.size() > kMaxQueuedOutputMessages) outgoing_.pop_front();  // never blocks the guest
      if (outgoing_.size() == 1 || !writing_) write_next();
      read_console();
    });
  }
  void write_next() {
    if (writing_ || outgoing_.empty()) return;
    writing_ = true;
    current_ = std::move(outgoing_.front());
    outgoing_.pop_front();
    ws_.async_write(asio::buffer(current_), [this](beast::error_code ec, size_t) {
      writing_ = false;
      if (ec) return close();
      write_next();
    });
  }
  void read_socket() {
    ws_.async_read(incoming_, [this](beast::error_code ec, size_t) {
      if (ec) return close();
      const auto data = incoming_.data();
      const size_t size = data.size();
      // A message larger than the bound (a big paste) still goes when nothing
      // waits: it is already in memory, bounded by the WebSocket's limit.
      const bool idle = input_writing_.empty() && input_waiting_.empty();
      if (idle || input_writing_.size() + input_waiting_.size() + size <= kMaxQueuedInput) {
        input_waiting_.append(static_cast<const char*>(data.data()), size);
        write_input();
      } else {
        dropped_input_ += size;
        HV_LOG_WARN_LIMITED("web console: the console does not read its input; dropped {} bytes", size);
      }
      incoming_.consume(size);
      read_socket();
    });
  }
  // One asynchronous write to the console at a time, of all that waits.
  void write_input() {
    if (!input_writing_.empty() || input_waiting_.empty()) return;
    input_writing_.swap(input_waiting_);
    asio::async_write(console_, asio::buffer(input_writing_), [this](beast::error_code ec, size_t) {
      input_writing_.clear();
      if (ec) return close();
      write_input();
    });
  }
  void close() { ioc_.stop(); }

  asio::io_context ioc_;
  websocket::stream<Socket> ws_;
  asio::posix::stream_descriptor console_;
  std::array<char, 16384> console_buffer_{};
  std::deque<std::string> outgoing_;
  std::string current_;
  bool writing_ = false;
  beast::flat_buffer incoming_;
  // Input being written to the console, and input that came meanwhile.
  std::string input_writing_;
  std::string input_waiting_;
  uint64_t dropped_input_ = 0;
};

// /v1/vms/NAME/exec as a WebSocket: a command whose input and output stream
// while it runs (a shell on a terminal). The client's first message is the
// request (exec's body plus terminal, rows, cols); then binary messages are
// its stdin, and text messages {"resize":[rows,cols]}, {"signal":N} or
// {"eof":true}. The server sends binary messages whose first byte is the
// stream (1 stdout, 2 stderr), and a last text message: exec's result, or
// {"error":{...}}. The command runs on a thread of its own (the agent
// client's poll loop); its output is posted to this io_context, which alone
// writes to the WebSocket.
//
// Back-pressure: at most kMaxQueuedOutput bytes of output wait for a client
// that does not read; then on_output blocks the command's thread until the
// WebSocket takes some, which stops reading the agent's stream, and the
// guest's writes wait in turn. Without it a guest printing without end to a
// client that never reads would grow the daemon's memory without bound.
template <typename Socket>
class ExecBridge {
 public:
  static constexpr size_t kMaxQueuedOutput = 1 << 20;

  ExecBridge(Socket socket, VmService& service, std::string vm, uint64_t max_message)
      : ws_(adopt(ioc_, socket)), service_(service), vm_(std::move(vm)) {
    ws_.read_message_max(max_message);
  }

  void run(const http::request<http::string_body>& request) {
    beast::error_code ec;
    ws_.accept(request, ec);
    if (ec) return;
    beast::flat_buffer first;
    ws_.read(first, ec);
    if (ec) return;
    auto parsed = parse_exec_stream_request(beast::buffers_to_string(first.data()));
    if (!parsed) return finish_now(error_json(parsed.error()));
    stream_ = std::move(parsed.value());
    int pipe_fds[2];
    auto events = EventFd::create(0, EFD_NONBLOCK);
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0 || !events) return finish_now(error_json(Error::from_errno("pipe")));
    stdin_read_.reset(pipe_fds[0]);
    stdin_write_.reset(pipe_fds[1]);
    events_ = std::make_unique<EventFd>(std::move(events.value()));
    stream_.stdin_fd = stdin_read_.get();
    stream_.event_fd = events_->fd();
    stream_.on_output = [this](int channel, std::span<const uint8_t> bytes) {
      {
        std::unique_lock lock(output_mutex_);
        output_room_.wait(lock, [&] { return client_gone_ || queued_output_ < kMaxQueuedOutput; });
        if (client_gone_) return;  // nobody to send it to
        queued_output_ += bytes.size();
      }
      std::string message(1, static_cast<char>(channel));
      message.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      asio::post(ioc_, [this, message = std::move(message)]() mutable { send(std::move(message), true); });
    };
    stream_.on_event = [this](agent::ExecControl& control) {
      events_->consume();
      std::deque<nlohmann::json> pending;
      {
        std::lock_guard lock(control_mutex_);
        pending.swap(control_);
      }
      for (const nlohmann::json& message : pending) {
        if (message.contains("resize") && message["resize"].is_array() && message["resize"].size() == 2 &&
            message["resize"][0].is_number_unsigned() && message["resize"][1].is_number_unsigned())
          (void)control.resize(message["resize"][0].get<uint16_t>(), message["resize"][1].get<uint16_t>());
        if (message.contains("signal") && message["signal"].is_number_unsigned() && message["signal"].get<int>() < 65)
          (void)control.signal(message["signal"].get<int>());
      }
    };
    std::thread worker([this] {
      auto result = service_.exec_stream(vm_, stream_);
      const std::string last = result ? result->dump() : error_json(result.error());
      asio::post(ioc_, [this, last] {
        finished_ = true;
        send(last, false);
      });
    });
    read_client();
    ioc_.run();
    {
      std::lock_guard lock(output_mutex_);
      client_gone_ = true;
    }
    output_room_.notify_all();
    // The client left first: the command's stdin ends and it gets SIGHUP, as
    // a terminal's hang-up gives; the agent client sees it to its end.
    stdin_write_.reset();
    {
      std::lock_guard lock(control_mutex_);
      control_.push_back(nlohmann::json{{"signal", SIGHUP}});
    }
    events_->signal();
    worker.join();
  }

 private:
  static std::string error_json(const Error& error) {
    return nlohmann::json{{"error", {{"code", api_error_code(error.code())}, {"message", error.message()}}}}.dump();
  }
  void finish_now(const std::string& text) {
    beast::error_code ec;
    ws_.text(true);
    ws_.write(asio::buffer(text), ec);
    ws_.close(websocket::close_code::normal, ec);
  }
  void send(std::string message, bool binary) {
    outgoing_.emplace_back(binary, std::move(message));
    write_next();
  }
  void write_next() {
    if (writing_) return;
    if (outgoing_.empty()) {
      if (finished_) {
        ws_.async_close(websocket::close_code::normal, [this](beast::error_code) { ioc_.stop(); });
        finished_ = false;
      }
      return;
    }
    writing_ = true;
    current_ = std::move(outgoing_.front());
    outgoing_.pop_front();
    ws_.binary(current_.first);
    ws_.async_write(asio::buffer(current_.second), [this](beast::error_code ec, size_t) {
      writing_ = false;
      if (current_.first) {
        // Output (the stream byte and its bytes) has left: room for more.
        std::lock_guard lock(output_mutex_);
        queued_output_ -= std::min(queued_output_, current_.second.size() - 1);
      }
      output_room_.notify_all();
      if (ec) return ioc_.stop();
      write_next();
    });
  }
  void read_client() {
    ws_.async_read(incoming_, [this](beast::error_code ec, size_t) {
      if (ec) return ioc_.stop();
      std::string data = beast::buffers_to_string(incoming_.data());
      incoming_.consume(incoming_.size());
      if (ws_.got_binary()) {
        if (stdin_write_.valid() && !write_fully(stdin_write_.get(), data)) stdin_write_.reset();
      } else {
        const nlohmann::json message = nlohmann::json::parse(data, nullptr, false);
        if (message.is_object() && message.value("eof", false)) {
          stdin_write_.reset();
        } else if (message.is_object()) {
          std::lock_guard lock(control_mutex_);
          if (control_.size() < 64) control_.push_back(message);
          events_->signal();
        }
      }
      read_client();
    });
  }

  asio::io_context ioc_;
  websocket::stream<Socket> ws_;
  VmService& service_;
  std::string vm_;
  ExecStream stream_;
  UniqueFd stdin_read_, stdin_write_;
  std::unique_ptr<EventFd> events_;
  std::mutex control_mutex_;
  std::deque<nlohmann::json> control_;
  std::deque<std::pair<bool, std::string>> outgoing_;
  std::pair<bool, std::string> current_;
  bool writing_ = false;
  bool finished_ = false;
  std::mutex output_mutex_;  // guards queued_output_ and client_gone_
  std::condition_variable output_room_;
  size_t queued_output_ = 0;  // output bytes posted and not yet written
  bool client_gone_ = false;
  beast::flat_buffer incoming_;
};

RequestHead head_of(const http::request_parser<http::string_body>& parser) {
  const auto& request = parser.get();
  RequestHead head{.method = std::string(request.method_string()), .target = std::string(request.target())};
  const auto one = [&](http::field field, std::optional<std::string>& out) {
    const auto [first, last] = request.equal_range(field);
    if (first == last) return;
    if (std::next(first) != last) head.ambiguous = true;
    out = std::string(first->value());
  };
  one(http::field::host, head.host);
  one(http::field::origin, head.origin);
  for (const auto& field : request) {
    if (field.name() == http::field::cookie) {
      if (!head.cookie.empty()) head.cookie += "; ";
      head.cookie.append(field.value().data(), field.value().size());
    }
  }
  if (auto it = request.find(http::field::authorization); it != request.end())
    head.authorization = std::string(it->value());
  return head;
}

template <typename Socket>
void write_answer(Socket& socket, ApiResponse answer, unsigned version, bool keep_alive,
                  const ConnectionOptions& options, beast::error_code& ec) {
  http::response<http::string_body> response{static_cast<http::status>(answer.status), version};
  set_common(response, version, keep_alive, options);
  for (const auto& [field, value] : answer.headers) response.set(field, value);
  if (!answer.content_type.empty()) response.set(http::field::content_type, answer.content_type);
  response.body() = std::move(answer.body);
  response.prepare_payload();
  http::write(socket, response, ec);
}

template <typename Socket>
void serve_connection(Socket socket, VmService& service, const ConnectionOptions& options) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(options.max_body);
    parser.header_limit(options.max_header);
    beast::error_code ec;
    http::read_header(socket, buffer, parser, ec);
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset) return;
    RequestHead head;
    if (!ec) {
      head = head_of(parser);
      if (options.screen) {
        if (auto refusal = options.screen(head)) {
          // The body stays unread, so the connection cannot go on.
          write_answer(socket, std::move(*refusal), parser.get().version(), false, options, ec);
          return;
        }
      }
      if (!parser.is_done()) http::read(socket, buffer, parser, ec);
    }
    if (ec) {
      const bool too_big = ec == http::error::body_limit || ec == http::error::header_limit;
      const std::string limits =
          "a body of " + format_size(options.max_body) + " and a header of " + format_size(options.max_header);
      write_answer(socket,
                   error_response(too_big ? 413 : 400, too_big ? "too-large" : "bad-request",
                                  too_big ? "the request is larger than this server takes (" + limits + ")"
                                          : "malformed HTTP request: " + ec.message()),
                   11, false, options, ec);
      return;
    }
    http::request<http::string_body> request = parser.release();
    ApiRequest api_request{.method = std::string(request.method_string()),
                           .target = std::string(request.target()),
                           .body = std::move(request.body())};
    std::optional<ApiResponse> extra = options.extra_routes ? options.extra_routes(head, api_request) : std::nullopt;
    ApiResponse api_response = extra ? std::move(*extra) : handle_request(service, api_request);
    if (api_response.kind == ApiResponse::Kind::kEventStream)
      return stream_events(socket, service, request.version(), options);
    if (api_response.kind == ApiResponse::Kind::kExecStream) {
      if (!websocket::is_upgrade(request)) {
        api_response = error_response(426, "upgrade-required", "GET exec is a WebSocket; POST runs a command to its end");
      } else {
        ExecBridge<Socket> bridge(std::move(socket), service, api_response.vm, options.max_websocket_message);
        bridge.run(request);
        return;
      }
    }
    if (api_response.kind == ApiResponse::Kind::kConsole) {
      if (!websocket::is_upgrade(request)) {
        api_response = error_response(426, "upgrade-required", "the console is a WebSocket: send an Upgrade request");
      } else {
        auto console = service.attach_console(api_response.vm);
        if (!console) {
          api_response = error_response(console.error());
        } else {
          ConsoleBridge<Socket> bridge(std::move(socket), std::move(console.value()), options.max_websocket_message);
          bridge.run(request);
          return;
        }
      }
    }
    write_answer(socket, std::move(api_response), request.version(), request.keep_alive(), options, ec);
    if (ec || !request.keep_alive()) return;
  }
}

class UnixApiServer final : public ApiServer {
 public:
  UnixApiServer(std::string path, VmService& service, ExtraRoutes extra_routes)
      : path_(std::move(path)), service_(service) {
    options_.extra_routes = std::move(extra_routes);
  }

  Result<void> bind() {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::string temp = path_ + ".tmp-" + std::to_string(::getpid());
    if (temp.size() >= sizeof(address.sun_path))
      return Error(ErrorCode::kInvalidArgument, "API socket path too long: " + path_);
    std::memcpy(address.sun_path, temp.data(), temp.size());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return Error::from_errno("socket");
    ::unlink(temp.c_str());
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0)
      return Error::from_errno("bind " + temp);
    if (::chmod(temp.c_str(), 0600) != 0 || ::listen(fd.get(), 256) != 0) {
      const int err = errno;
      ::unlink(temp.c_str());
      return Error::from_errno("listen on " + temp, err);
    }
    if (::rename(temp.c_str(), path_.c_str()) != 0) {
      const int err = errno;
      ::unlink(temp.c_str());
      return Error::from_errno("rename " + temp + " to " + path_, err);
    }
    boost::system::error_code ec;
    acceptor_.assign(asio::local::stream_protocol(), fd.release(), ec);
    if (ec) return Error(ErrorCode::kIo, "API socket: " + ec.message());
    return ok();
  }

  Result<void> run() override {
    asio::signal_set signals(ioc_, SIGTERM, SIGINT);
    signals.async_wait([this](const boost::system::error_code&, int) {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      ioc_.stop();
    });
    accept();
    ioc_.run();
    ::unlink(path_.c_str());
    return ok();
  }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, UnixSocket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        if (!peer_is_us(socket.native_handle())) {
          HV_LOG_WARN_LIMITED("API: refused a connection from another user");
        } else if (g_connections.load() >= kMaxConnections) {
          HV_LOG_WARN_LIMITED("API: refused a connection: {} already open", kMaxConnections);
        } else {
          // The session gets a plain socket of its own (not tied to this
          // io_context): it runs blocking on its own thread.
          const int fd = socket.release();
          ++g_connections;
          std::thread([fd, this] {
            serve_unix_connection(fd, service_, options_);
            --g_connections;
          }).detach();
        }
      }
      accept();
    });
  }

  std::string path_;
  VmService& service_;
  ConnectionOptions options_;
  asio::io_context ioc_;
  asio::local::stream_protocol::acceptor acceptor_{ioc_};
};

}  // namespace

void serve_unix_connection(int fd, VmService& service, const ConnectionOptions& options) {
  asio::io_context own;
  serve_connection(UnixSocket(own, asio::local::stream_protocol(), fd), service, options);
}

void serve_tcp_connection(int fd, VmService& service, const ConnectionOptions& options) {
  asio::io_context own;
  // The web console listens on 127.0.0.1 only.
  serve_connection(TcpSocket(own, asio::ip::tcp::v4(), fd), service, options);
}

Result<std::unique_ptr<ApiServer>> ApiServer::listen(const std::string& socket_path, VmService& service,
                                                     ExtraRoutes extra_routes) {
  auto server = std::make_unique<UnixApiServer>(socket_path, service, std::move(extra_routes));
  HV_TRY(server->bind());
  return std::unique_ptr<ApiServer>(std::move(server));
}

}  // namespace hostvisor::api
