#include "cli/api_client.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <thread>

#include "daemon/library_paths.h"
#include "daemon/vm_process.h"

namespace hostvisor::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {
bool answers(const std::string& path) {
  asio::io_context ioc;
  asio::local::stream_protocol::socket socket(ioc);
  boost::system::error_code ec;
  socket.connect(asio::local::stream_protocol::endpoint(path), ec);
  return !ec;
}
}  // namespace

std::string url_encode(const std::string& text) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Result<void> ApiClient::ensure_daemon() {
  if (checked_) return ok();
  if (!socket_.empty()) {
    checked_ = true;
    return ok();
  }
  socket_ = HV_TRY(daemon::default_api_socket());
  if (answers(socket_)) {
    checked_ = true;
    return ok();
  }
  // Start it: `hostvisor daemon` from this very binary, in a session of its own.
  const daemon::LibraryPaths paths = HV_TRY(daemon::default_library_paths());
  HV_TRY(daemon::create_library_directories(paths));
  const std::string log = paths.data_dir + "/daemon.log";
  HV_TRY(daemon::spawn_detached("/proc/self/exe", {"daemon"}, log));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (answers(socket_)) {
      checked_ = true;
      return ok();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Error(ErrorCode::kIo, "the hostvisor daemon did not come up within 10 s: " + daemon::log_tail(log) +
                                   " (log: " + log + ")");
}

Result<std::string> ApiClient::socket() {
  HV_TRY(ensure_daemon());
  return socket_;
}

Result<ApiReply> ApiClient::request(const std::string& method, const std::string& target, const std::string& body,
                                    const std::string& content_type) {
  HV_TRY(ensure_daemon());
  asio::io_context ioc;
  asio::local::stream_protocol::socket socket(ioc);
  boost::system::error_code ec;
  socket.connect(asio::local::stream_protocol::endpoint(socket_), ec);
  if (ec) return Error(ErrorCode::kIo, "cannot reach the hostvisor daemon at " + socket_ + ": " + ec.message());
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "localhost");
  req.set(http::field::user_agent, "hostvisor-cli");
  if (!body.empty()) req.set(http::field::content_type, content_type);
  req.body() = body;
  req.keep_alive(false);
  req.prepare_payload();
  http::write(socket, req, ec);
  if (ec) return Error(ErrorCode::kIo, "sending to the daemon: " + ec.message());
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(uint64_t{1} << 30);
  http::read(socket, buffer, parser, ec);
  if (ec) return Error(ErrorCode::kIo, "reading the daemon's answer: " + ec.message());
  return ApiReply{parser.get().result_int(), parser.get().body()};
}

Result<nlohmann::json> ApiClient::call(const std::string& method, const std::string& target,
                                       const nlohmann::json& body) {
  const ApiReply reply = HV_TRY(request(method, target, body.is_null() ? std::string() : body.dump()));
  nlohmann::json parsed =
      reply.body.empty() ? nlohmann::json::object() : nlohmann::json::parse(reply.body, nullptr, false);
  if (reply.status >= 400) {
    std::string message = "the daemon answered " + std::to_string(reply.status);
    if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_object())
      message = parsed["error"].value("message", message);
    ErrorCode code = ErrorCode::kIo;
    if (reply.status == 400) code = ErrorCode::kInvalidArgument;
    if (reply.status == 404) code = ErrorCode::kNotFound;
    if (reply.status == 409) code = ErrorCode::kBusy;
    return Error(code, message);
  }
  if (parsed.is_discarded()) return Error(ErrorCode::kCorrupt, "the daemon's answer is not JSON");
  return parsed;
}

}  // namespace hostvisor::cli
