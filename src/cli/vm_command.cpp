#include "cli/vm_command.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <sys/stat.h>
#include <thread>

#include "base/fd.h"
#include "base/size.h"
#include "cli/api_client.h"

namespace hostvisor::cli {

using nlohmann::json;

namespace {

struct VmArgs {
  std::string socket;  // --api-socket
  std::string name, other, snapshot, source, destination;
  std::string memory = "512M", accel = "auto", console = "serial", kernel, initrd, append, data_disk = "8G";
  uint32_t cpus = 1;
  std::vector<std::string> disks, nets, shares, command;
  bool json_output = false, force = false, no_balloon = false, console_log = false, with_stdin = false, tty = false;
  bool share_rw = false, no_share = false;  // vm launch: how the current directory is shared
  bool verify = false;                      // vm restore --verify
  uint32_t timeout = 30;
  std::string dhcp;
};

int fail(const Error& error) {
  std::fprintf(stderr, "hostvisor: %s\n", error.message().c_str());
  return error.code() == ErrorCode::kInvalidArgument ? 2 : 1;
}

int report(const Result<void>& outcome) { return outcome ? 0 : fail(outcome.error()); }

Result<void> discard(const Result<json>& result) {
  if (!result) return result.error();
  return ok();
}

std::string vm_path(const std::string& name) { return "/v1/vms/" + name; }

Result<json> parse_disk(const std::string& spec) {
  json disk = json::object();
  size_t start = 0;
  bool first = true;
  while (start <= spec.size()) {
    const size_t comma = spec.find(',', start);
    const std::string part = spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (first) {
      disk["path"] = part;
      first = false;
    } else if (part.starts_with("format=")) {
      disk["format"] = part.substr(7);
    } else if (part == "readonly=on") {
      disk["readonly"] = true;
    } else if (!part.empty()) {
      return Error(ErrorCode::kInvalidArgument, "--disk " + spec + ": '" + part + "' is not format=... or readonly=on");
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return disk;
}

// HOSTDIR[,tag=T][,readonly=on][,mount=GUESTPATH] (",," a literal comma in
// HOSTDIR): the API's share object; the daemon checks the values.
Result<json> parse_share(const std::string& spec) {
  std::string dir;
  size_t i = 0;
  for (; i < spec.size(); ++i) {
    if (spec[i] != ',') {
      dir += spec[i];
    } else if (i + 1 < spec.size() && spec[i + 1] == ',') {
      dir += ',';
      ++i;
    } else {
      break;
    }
  }
  if (dir.empty())
    return Error(ErrorCode::kInvalidArgument, "--share " + spec + ": expected HOSTDIR[,tag=T][,readonly=on][,mount=GUESTPATH]");
  json share{{"path", std::filesystem::absolute(dir).lexically_normal().string()}};
  std::string path = share["path"];
  if (path.size() > 1 && path.back() == '/') share["path"] = path.substr(0, path.size() - 1);
  while (i < spec.size()) {
    const size_t start = i + 1;
    const size_t comma = spec.find(',', start);
    const std::string part = spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    i = comma == std::string::npos ? spec.size() : comma;
    if (part.starts_with("tag=")) {
      share["tag"] = part.substr(4);
    } else if (part == "readonly=on" || part == "readonly=off") {
      share["readonly"] = part == "readonly=on";
    } else if (part.starts_with("mount=")) {
      share["mount"] = part.substr(6);
    } else {
      return Error(ErrorCode::kInvalidArgument,
                   "--share " + spec + ": '" + part + "' is not tag=..., readonly=on|off or mount=GUESTPATH");
    }
  }
  return share;
}

Result<void> create(ApiClient& api, const VmArgs& args, const json& extra_shares = json::array()) {
  json body{{"name", args.name}, {"memory", args.memory}, {"cpus", args.cpus}, {"accel", args.accel},
            {"console", args.console}};
  if (!args.kernel.empty()) body["kernel"] = std::filesystem::absolute(args.kernel).string();
  if (!args.initrd.empty()) body["initrd"] = std::filesystem::absolute(args.initrd).string();
  if (!args.append.empty()) body["append"] = args.append;
  json disks = json::array();
  for (const std::string& spec : args.disks) {
    json disk = HV_TRY(parse_disk(spec));
    disk["path"] = std::filesystem::absolute(disk["path"].get<std::string>()).string();
    disks.push_back(disk);
  }
  body["disks"] = disks;
  json shares = json::array();
  for (const std::string& spec : args.shares) shares.push_back(HV_TRY(parse_share(spec)));
  for (const json& share : extra_shares) shares.push_back(share);
  if (!shares.empty()) body["shares"] = shares;
  if (!args.nets.empty()) body["nets"] = args.nets;
  if (args.no_balloon) body["balloon"] = false;
  if (args.kernel.empty()) body["data_disk_bytes"] = args.data_disk == "0" ? 0 : HV_TRY(parse_size(args.data_disk));
  const json vm = HV_TRY(api.call("POST", "/v1/vms", body));
  std::printf("created VM %s (%s)\n", vm.value("name", "").c_str(), vm.value("directory", "").c_str());
  return ok();
}

Result<void> list(ApiClient& api, bool as_json) {
  const json vms = HV_TRY(api.call("GET", "/v1/vms"));
  if (as_json) {
    std::printf("%s\n", vms.dump(2).c_str());
    return ok();
  }
  std::printf("%-24s %-10s %-8s %-5s %-7s %s\n", "NAME", "STATE", "MEMORY", "CPUS", "PID", "GUEST");
  for (const json& vm : vms) {
    const std::string guest = vm.value("kernel", "").empty() ? "default" : vm.value("kernel", "");
    const std::string pid = vm["pid"].is_number() ? std::to_string(vm["pid"].get<int64_t>()) : "-";
    std::printf("%-24s %-10s %-8s %-5u %-7s %s\n", vm.value("name", "").c_str(), vm.value("state", "").c_str(),
                vm.value("memory", "").c_str(), vm.value("cpus", 0u), pid.c_str(), guest.c_str());
  }
  return ok();
}

Result<void> act(ApiClient& api, const std::string& name, const std::string& action, uint32_t timeout) {
  json body = json::object();
  if (action == "stop") body["timeout_seconds"] = timeout;
  const json vm = HV_TRY(api.call("POST", vm_path(name) + "/" + action, body));
  std::printf("%s: %s\n", name.c_str(), vm.value("state", "").c_str());
  return ok();
}

// Runs a command through the API; its output and status become ours.
Result<int> exec(ApiClient& api, const std::string& name, const std::vector<std::string>& command, bool with_stdin) {
  json body{{"argv", command}};
  if (with_stdin) {
    std::string input;
    char chunk[65536];
    ssize_t n;
    while ((n = ::read(STDIN_FILENO, chunk, sizeof(chunk))) > 0) input.append(chunk, static_cast<size_t>(n));
    body["stdin"] = input;
  }
  const json result = HV_TRY(api.call("POST", vm_path(name) + "/exec", body));
  const std::string out = result.value("stdout", ""), err = result.value("stderr", "");
  (void)write_fully(STDOUT_FILENO, out);
  (void)write_fully(STDERR_FILENO, err);
  return result.value("status", 1);
}

// NAME:PATH names a file in VM NAME; anything else is a host path.
bool split_guest_path(const std::string& spec, std::string& vm, std::string& path) {
  const size_t colon = spec.find(':');
  if (colon == std::string::npos || colon == 0 || spec.find('/') < colon) return false;
  vm = spec.substr(0, colon);
  path = spec.substr(colon + 1);
  return true;
}

Result<void> copy(ApiClient& api, const std::string& source, const std::string& destination) {
  std::string vm, guest_path;
  if (split_guest_path(source, vm, guest_path)) {
    const ApiReply reply = HV_TRY(api.request("GET", vm_path(vm) + "/files?path=" + url_encode(guest_path)));
    if (reply.status >= 400) {
      const json error = json::parse(reply.body, nullptr, false);
      return Error(ErrorCode::kIo, error.is_object() && error.contains("error")
                                       ? error["error"].value("message", "copy failed")
                                       : "copy failed: " + std::to_string(reply.status));
    }
    std::string target = destination;
    if (std::filesystem::is_directory(target))
      target += "/" + std::filesystem::path(guest_path).filename().string();
    UniqueFd fd = HV_TRY(open_file(target, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    return write_fully(fd.get(), reply.body);
  }
  if (!split_guest_path(destination, vm, guest_path))
    return Error(ErrorCode::kInvalidArgument, "one of SRC and DST names a VM's file: NAME:/path");
  const std::string data = HV_TRY(hostvisor::read_file(source));
  struct stat st{};
  const unsigned mode = ::stat(source.c_str(), &st) == 0 ? st.st_mode & 07777 : 0644;
  if (guest_path.ends_with("/")) guest_path += std::filesystem::path(source).filename().string();
  char mode_text[8];
  std::snprintf(mode_text, sizeof(mode_text), "%o", mode);
  const ApiReply reply = HV_TRY(api.request(
      "PUT", vm_path(vm) + "/files?path=" + url_encode(guest_path) + "&mode=" + mode_text, data,
      "application/octet-stream"));
  if (reply.status >= 400) {
    const json error = json::parse(reply.body, nullptr, false);
    return Error(ErrorCode::kIo, error.is_object() && error.contains("error")
                                     ? error["error"].value("message", "copy failed")
                                     : "copy failed: " + std::to_string(reply.status));
  }
  return ok();
}

using UnixWebSocket = boost::beast::websocket::stream<boost::asio::local::stream_protocol::socket>;

// Why the daemon refuses the WebSocket at `target`: its JSON error's
// message. Beast's client handshake reads only the refusal's header, so the
// same upgrade request goes again as plain HTTP, whose whole answer is read.
std::optional<std::string> upgrade_refusal(const std::string& socket_path, const std::string& target) {
  namespace asio = boost::asio;
  namespace http = boost::beast::http;
  asio::io_context ioc;
  asio::local::stream_protocol::socket socket(ioc);
  boost::system::error_code ec;
  socket.connect(asio::local::stream_protocol::endpoint(socket_path), ec);
  if (ec) return std::nullopt;
  http::request<http::empty_body> request{http::verb::get, target, 11};
  request.set(http::field::host, "localhost");
  request.set(http::field::connection, "Upgrade");
  request.set(http::field::upgrade, "websocket");
  request.set(http::field::sec_websocket_version, "13");
  request.set(http::field::sec_websocket_key, "aG9zdHZpc29yLWNsaTAwMA==");
  http::write(socket, request, ec);
  if (ec) return std::nullopt;
  boost::beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);
  http::read(socket, buffer, parser, ec);
  if (ec || parser.get().result() == http::status::switching_protocols) return std::nullopt;
  const json error = json::parse(parser.get().body(), nullptr, false);
  if (!error.is_object() || !error.contains("error") || !error["error"].is_object()) return std::nullopt;
  return error["error"].value("message", "");
}

// Connects `ws` to the daemon's socket and opens the WebSocket at `target`;
// a refusal carries the API's own error message when it sent one.
Result<void> open_api_websocket(UnixWebSocket& ws, const std::string& socket_path, const std::string& target,
                                const std::string& what) {
  boost::system::error_code ec;
  ws.next_layer().connect(boost::asio::local::stream_protocol::endpoint(socket_path), ec);
  if (ec) return Error(ErrorCode::kIo, "cannot reach the daemon: " + ec.message());
  ws.handshake("localhost", target, ec);
  if (!ec) return {};
  if (ec == boost::beast::websocket::error::upgrade_declined) {
    if (auto refusal = upgrade_refusal(socket_path, target)) return Error(ErrorCode::kIo, *refusal);
  }
  return Error(ErrorCode::kIo, what + ": " + ec.message());
}

// stdin's terminal in raw mode for as long as this lives (keys reach the
// guest unprocessed), then as it was. Nothing changes when stdin is no terminal.
class RawTerminal {
 public:
  RawTerminal() {
    if (!::isatty(STDIN_FILENO) || ::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios mode = saved_;
    ::cfmakeraw(&mode);
    raw_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &mode) == 0;
  }
  ~RawTerminal() {
    if (raw_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  termios saved_{};
  bool raw_ = false;
};

// Messages to a WebSocket in the order sent: Beast allows one async_write
// at a time, so the others wait in a queue. A write error stops `ioc`.
class WebSocketSender {
 public:
  WebSocketSender(UnixWebSocket& ws, boost::asio::io_context& ioc) : ws_(ws), ioc_(ioc) {}

  void send(std::string message, bool binary) {
    queue_.emplace_back(binary, std::move(message));
    write_next();
  }

 private:
  void write_next() {
    if (writing_ || queue_.empty()) return;
    writing_ = true;
    current_ = std::move(queue_.front());
    queue_.pop_front();
    ws_.binary(current_.first);
    ws_.async_write(boost::asio::buffer(current_.second), [this](boost::system::error_code ec, size_t) {
      writing_ = false;
      if (ec) return ioc_.stop();
      write_next();
    });
  }

  UnixWebSocket& ws_;
  boost::asio::io_context& ioc_;
  std::deque<std::pair<bool, std::string>> queue_;
  std::pair<bool, std::string> current_;
  bool writing_ = false;
};

// The console over the API's WebSocket: the terminal goes raw; Ctrl-] detaches.
class ConsoleSession {
 public:
  explicit ConsoleSession(const std::string& socket) : socket_path_(socket) {}

  Result<void> run(const std::string& name) {
    HV_TRY(open_api_websocket(ws_, socket_path_, "/v1/vms/" + name + "/console", "console of " + name));
    std::fprintf(stderr, "hostvisor: attached to the console of %s; Ctrl-] detaches\r\n", name.c_str());
    {
      RawTerminal raw;
      read_stdin();
      read_ws();
      ioc_.run();
    }
    std::fprintf(stderr, "\r\nhostvisor: detached\n");
    return ok();
  }

 private:
  void read_stdin() {
    stdin_.async_read_some(boost::asio::buffer(keys_), [this](boost::system::error_code ec, size_t n) {
      if (ec) return ioc_.stop();
      std::string bytes(keys_.data(), n);
      const size_t detach = bytes.find('\x1d');
      if (detach != std::string::npos) bytes.resize(detach);
      if (!bytes.empty()) sender_.send(std::move(bytes), true);
      if (detach != std::string::npos) return ioc_.stop();
      read_stdin();
    });
  }
  void read_ws() {
    ws_.async_read(incoming_, [this](boost::system::error_code ec, size_t) {
      if (ec) return ioc_.stop();
      const auto data = incoming_.data();
      write_all(STDOUT_FILENO, std::span(static_cast<const uint8_t*>(data.data()), data.size()));
      incoming_.consume(incoming_.size());
      read_ws();
    });
  }

  std::string socket_path_;
  boost::asio::io_context ioc_;
  UnixWebSocket ws_{ioc_};
  boost::asio::posix::stream_descriptor stdin_{ioc_, ::dup(STDIN_FILENO)};
  WebSocketSender sender_{ws_, ioc_};
  std::array<char, 4096> keys_{};
  boost::beast::flat_buffer incoming_;
};

// A command on a terminal in the VM (a shell), through the API's exec
// WebSocket: this terminal goes raw, keys go to the command, its output
// comes back, the window size follows. The command's status is ours.
class ExecSession {
 public:
  explicit ExecSession(const std::string& socket) : socket_path_(socket) {}

  // cwd: where the command starts in the guest (empty: the agent's own).
  Result<int> run(const std::string& name, const std::vector<std::string>& argv, const std::string& cwd = "") {
    namespace asio = boost::asio;
    HV_TRY(open_api_websocket(ws_, socket_path_, "/v1/vms/" + name + "/exec", "exec in " + name));
    boost::system::error_code ec;
    const bool terminal = ::isatty(STDIN_FILENO);
    json request{{"argv", argv}, {"terminal", terminal}};
    if (!cwd.empty()) request["cwd"] = cwd;
    const char* term = std::getenv("TERM");
    request["env"] = {std::string("TERM=") + (term != nullptr ? term : "xterm")};
    uint16_t rows = 0, cols = 0;
    if (window_size(rows, cols)) {
      request["rows"] = rows;
      request["cols"] = cols;
    }
    ws_.text(true);
    ws_.write(asio::buffer(request.dump()), ec);
    if (ec) return Error(ErrorCode::kIo, "exec in " + name + ": " + ec.message());
    {
      RawTerminal raw;
      read_stdin();
      read_ws();
      watch_window();
      ioc_.run();
    }
    if (!result_.is_object()) return Error(ErrorCode::kIo, "the daemon closed the exec before the command ended");
    if (result_.contains("error"))
      return Error(ErrorCode::kIo, result_["error"].value("message", "exec failed"));
    return result_.value("status", 1);
  }

 private:
  static bool window_size(uint16_t& rows, uint16_t& cols) {
    winsize size{};
    if (::ioctl(STDIN_FILENO, TIOCGWINSZ, &size) != 0 || size.ws_row == 0) return false;
    rows = size.ws_row;
    cols = size.ws_col;
    return true;
  }
  void watch_window() {
    signals_.async_wait([this](boost::system::error_code ec, int) {
      if (ec) return;
      uint16_t rows, cols;
      if (window_size(rows, cols)) sender_.send(json{{"resize", {rows, cols}}}.dump(), false);
      watch_window();
    });
  }
  void read_stdin() {
    stdin_.async_read_some(boost::asio::buffer(keys_), [this](boost::system::error_code ec, size_t n) {
      if (ec) return sender_.send(json{{"eof", true}}.dump(), false);  // stdin ended: so does the command's
      sender_.send(std::string(keys_.data(), n), true);
      read_stdin();
    });
  }
  void read_ws() {
    ws_.async_read(incoming_, [this](boost::system::error_code ec, size_t) {
      if (ec) return ioc_.stop();
      const std::string data = boost::beast::buffers_to_string(incoming_.data());
      incoming_.consume(incoming_.size());
      if (ws_.got_binary()) {
        if (!data.empty())
          write_all(data[0] == 2 ? STDERR_FILENO : STDOUT_FILENO,
                    std::span(reinterpret_cast<const uint8_t*>(data.data()) + 1, data.size() - 1));
      } else {
        result_ = json::parse(data, nullptr, false);
        return ioc_.stop();
      }
      read_ws();
    });
  }

  std::string socket_path_;
  boost::asio::io_context ioc_;
  UnixWebSocket ws_{ioc_};
  boost::asio::posix::stream_descriptor stdin_{ioc_, ::dup(STDIN_FILENO)};
  boost::asio::signal_set signals_{ioc_, SIGWINCH};
  WebSocketSender sender_{ws_, ioc_};
  std::array<char, 4096> keys_{};
  boost::beast::flat_buffer incoming_;
  json result_;
};

// cwd: the directory the shell starts in (empty: the agent's).
int shell(ApiClient& api, const std::string& name, const std::string& cwd = "") {
  auto socket = api.socket();
  if (!socket) return fail(socket.error());
  ExecSession session(*socket);
  auto status = session.run(name, {"/bin/sh", "-l"}, cwd);
  return status ? *status : fail(status.error());
}

// Waits until the VM's agent runs a command (the guest has booted).
Result<void> wait_for_agent(ApiClient& api, const std::string& name) {
  const bool terminal = ::isatty(STDERR_FILENO);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  if (terminal) std::fprintf(stderr, "hostvisor: waiting for %s to boot", name.c_str());
  for (;;) {
    auto reply = api.call("POST", vm_path(name) + "/exec", json{{"argv", {"true"}}, {"timeout_seconds", 5}});
    if (reply && reply->value("status", 1) == 0) break;
    if (std::chrono::steady_clock::now() > deadline)
      return Error(ErrorCode::kIo, "the agent in " + name + " did not answer within 180 s (see hostvisor vm logs " +
                                       name + " --console)");
    if (terminal) std::fprintf(stderr, ".");
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  if (terminal) std::fprintf(stderr, " up\n");
  return ok();
}

// The directory `vm launch` runs in, as the share the new VM gets: the
// same path in the guest, read-only unless --share-rw.
Result<json> current_directory_share(bool writable) {
  std::error_code ec;
  const std::string cwd = std::filesystem::current_path(ec).string();
  if (ec) return Error(ErrorCode::kIo, "the current directory: " + ec.message());
  if (cwd == "/")
    return Error(ErrorCode::kInvalidArgument,
                 "vm launch shares the current directory, and / is too much: run it in a project directory, or "
                 "give --no-share");
  return json{{"path", cwd}, {"tag", "cwd"}, {"readonly", !writable}, {"mount", cwd}};
}

// Where the launched shell starts: the current directory when the VM
// mounts it (a share of it, at the same path), else the agent's directory.
std::string shell_directory(const json& vm) {
  std::error_code ec;
  const std::string cwd = std::filesystem::current_path(ec).string();
  if (ec || !vm.contains("shares") || !vm["shares"].is_array()) return "";
  for (const json& share : vm["shares"])
    if (share.value("path", "") == cwd && share.value("mount", "") == cwd) return cwd;
  return "";
}

int launch(ApiClient& api, const VmArgs& args) {
  auto vm = api.call("GET", vm_path(args.name));
  if (!vm && vm.error().code() != ErrorCode::kNotFound) return fail(vm.error());
  if (!vm) {
    json shares = json::array();
    if (!args.no_share) {
      auto share = current_directory_share(args.share_rw);
      if (!share) return fail(share.error());
      shares.push_back(*share);
    }
    if (auto created = create(api, args, shares); !created) return fail(created.error());
    vm = api.call("GET", vm_path(args.name));
    if (!vm) return fail(vm.error());
  }
  const std::string state = vm->value("state", "");
  if (state == "paused") {
    if (auto resumed = api.call("POST", vm_path(args.name) + "/resume"); !resumed) return fail(resumed.error());
  } else if (state != "running") {
    if (auto started = api.call("POST", vm_path(args.name) + "/start"); !started) return fail(started.error());
  }
  if (auto up = wait_for_agent(api, args.name); !up) return fail(up.error());
  return shell(api, args.name, shell_directory(*vm));
}

Result<void> logs(ApiClient& api, const std::string& name, bool console) {
  const ApiReply reply =
      HV_TRY(api.request("GET", vm_path(name) + "/logs?which=" + std::string(console ? "console" : "hostvisor")));
  if (reply.status >= 400) {
    const json error = json::parse(reply.body, nullptr, false);
    return Error(ErrorCode::kIo, error.is_object() && error.contains("error")
                                     ? error["error"].value("message", "no log")
                                     : "no log: " + std::to_string(reply.status));
  }
  return write_fully(STDOUT_FILENO, reply.body);
}

Result<void> print_json(const Result<json>& result) {
  if (!result) return result.error();
  std::printf("%s\n", result->dump(2).c_str());
  return ok();
}

}  // namespace

void add_vm_command(CLI::App& app, int* exit_status) {
  auto args = std::make_shared<VmArgs>();
  auto api = [args] { return ApiClient(args->socket); };
  auto* vm = app.add_subcommand("vm", "Manage the VM library (through the hostvisor daemon, started when needed)");
  vm->require_subcommand(1);
  vm->add_option("--api-socket", args->socket, "The daemon's API socket (default: the per-user one)");

  auto add_create_options = [args](CLI::App* cmd) {
    cmd->add_option("--memory,-m", args->memory, "Guest RAM (hostvisor run --memory)")->capture_default_str();
    cmd->add_option("--cpus", args->cpus, "vCPUs")->capture_default_str();
    cmd->add_option("--accel", args->accel, "auto, kvm or emu")->capture_default_str();
    cmd->add_option("--console", args->console, "serial or virtio")->capture_default_str();
    cmd->add_option("--kernel", args->kernel, "Kernel to boot (default: the built-in default guest)");
    cmd->add_option("--initrd", args->initrd, "Initial ramdisk");
    cmd->add_option("--append", args->append, "Kernel command line");
    cmd->add_option("--disk", args->disks, "A disk image: PATH[,format=raw|qcow2][,readonly=on] (repeatable)");
    cmd->add_option("--net", args->nets,
                    "A --net of hostvisor run (repeatable; default user), e.g. internal,name=NET for a network of "
                    "`hostvisor net create`");
    cmd->add_option("--data-disk", args->data_disk,
                    "The default guest's persistent qcow2 data disk (0: none); attached as the VM's last disk")
        ->capture_default_str();
    cmd->add_option("--share", args->shares,
                    "Share a host directory (virtio-fs; repeatable): HOSTDIR[,tag=TAG][,readonly=on][,mount=GUESTPATH]."
                    " The default guest mounts it at GUESTPATH, or /mnt/TAG. A VM with a share cannot be "
                    "snapshotted or suspended");
    cmd->add_flag("--no-balloon", args->no_balloon, "No virtio-balloon device");
  };

  auto* create_cmd = vm->add_subcommand("create", "Create a VM (stopped)");
  create_cmd->add_option("NAME", args->name, "Lowercase letters, digits and '-'")->required();
  add_create_options(create_cmd);
  create_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    *exit_status = report(create(client, *args));
  });

  auto* list_cmd = vm->add_subcommand("list", "The VMs and their state");
  list_cmd->add_flag("--json", args->json_output, "As JSON");
  list_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    *exit_status = report(list(client, args->json_output));
  });

  for (const char* action : {"start", "stop", "kill", "pause", "resume", "reset", "suspend"}) {
    static const std::map<std::string, std::string> kHelp{
        {"start", "Start a VM (a suspended one continues where it was)"},
        {"stop", "Press the VM's power button; kill it if it is still running after --timeout seconds"},
        {"kill", "End the VM's process at once"},
        {"pause", "Pause the VM's vCPUs"},
        {"resume", "Resume a paused VM"},
        {"reset", "Reset the VM (as the reset button)"},
        {"suspend", "Save the VM's state to disk and stop; the next start continues it"}};
    auto* cmd = vm->add_subcommand(action, kHelp.at(action));
    cmd->add_option("NAME", args->name)->required();
    if (std::string(action) == "stop")
      cmd->add_option("--timeout", args->timeout, "Seconds the guest gets to power off")->capture_default_str();
    cmd->callback([args, api, exit_status, action = std::string(action)] {
      ApiClient client = api();
      *exit_status = report(act(client, args->name, action, args->timeout));
    });
  }

  auto* info_cmd = vm->add_subcommand("info", "A VM's settings and state (JSON)");
  info_cmd->add_option("NAME", args->name)->required();
  info_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    *exit_status = report(print_json(client.call("GET", vm_path(args->name))));
  });

  auto* logs_cmd = vm->add_subcommand("logs", "The VM process's log (or, with --console, the guest's console)");
  logs_cmd->add_option("NAME", args->name)->required();
  logs_cmd->add_flag("--console", args->console_log, "The guest console's output");
  logs_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    *exit_status = report(logs(client, args->name, args->console_log));
  });

  auto* delete_cmd = vm->add_subcommand("delete", "Delete a VM with its disks and snapshots");
  delete_cmd->add_option("NAME", args->name)->required();
  delete_cmd->add_flag("--force,-f", args->force, "Kill it first if it runs");
  delete_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    *exit_status = report([&]() -> Result<void> {
      HV_TRY(client.call("DELETE", vm_path(args->name) + (args->force ? "?force=true" : "")));
      std::printf("deleted VM %s\n", args->name.c_str());
      return ok();
    }());
  });

  auto* exec_cmd = vm->add_subcommand("exec", "Run a command in the VM through its agent: vm exec NAME -- CMD...");
  exec_cmd->add_option("NAME", args->name)->required();
  exec_cmd->add_flag("-i,--stdin", args->with_stdin, "Send this command's stdin (read to its end) as the command's");
  exec_cmd->add_flag("-t,--tty", args->tty,
                     "Interactive: input and output stream while it runs, on a terminal in the guest when this is one");
  exec_cmd->add_option("CMD", args->command, "The command and its arguments")->required();
  exec_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    Result<int> status = 0;
    if (args->tty) {
      auto socket = client.socket();
      if (!socket) {
        *exit_status = fail(socket.error());
        return;
      }
      ExecSession session(*socket);
      status = session.run(args->name, args->command);
    } else {
      status = exec(client, args->name, args->command, args->with_stdin);
    }
    *exit_status = status ? *status : fail(status.error());
  });

  auto* cp_cmd = vm->add_subcommand("cp", "Copy a file: vm cp FILE NAME:/PATH or vm cp NAME:/PATH FILE");
  cp_cmd->add_option("SRC", args->source)->required();
  cp_cmd->add_option("DST", args->destination)->required();
  cp_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    *exit_status = report(copy(client, args->source, args->destination));
  });

  auto* snapshot_cmd = vm->add_subcommand("snapshot", "Snapshot a running VM: vm snapshot NAME SNAPSHOT");
  snapshot_cmd->add_option("NAME", args->name)->required();
  snapshot_cmd->add_option("SNAPSHOT", args->snapshot)->required();
  snapshot_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    *exit_status = report([&]() -> Result<void> {
      const json result = HV_TRY(
          client.call("POST", vm_path(args->name) + "/snapshots", json{{"name", args->snapshot}}));
      std::printf("snapshot %s of %s: %s in %llu ms\n", args->snapshot.c_str(), args->name.c_str(),
                  format_size(result.value("bytes", uint64_t{0})).c_str(),
                  static_cast<unsigned long long>(result.value("millis", uint64_t{0})));
      return ok();
    }());
  });

  auto* snapshots_cmd = vm->add_subcommand("snapshots", "List a VM's snapshots");
  snapshots_cmd->add_option("NAME", args->name)->required();
  snapshots_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    *exit_status = report([&]() -> Result<void> {
      const json list = HV_TRY(client.call("GET", vm_path(args->name) + "/snapshots"));
      std::printf("%-32s %-22s %s\n", "SNAPSHOT", "CREATED", "SIZE");
      for (const json& s : list)
        std::printf("%-32s %-22s %s\n", s.value("name", "").c_str(), s.value("created", "").c_str(),
                    format_size(s.value("bytes", uint64_t{0})).c_str());
      return ok();
    }());
  });

  auto* restore_cmd = vm->add_subcommand("restore", "Continue a VM from its snapshot: vm restore NAME SNAPSHOT");
  restore_cmd->add_option("NAME", args->name)->required();
  restore_cmd->add_option("SNAPSHOT", args->snapshot)->required();
  restore_cmd->add_flag("--verify", args->verify,
                        "Check the snapshot's memory checksums before the guest runs (a bad chunk fails the restore)");
  restore_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    const json body{{"verify", args->verify}};
    *exit_status = report(
        print_json(client.call("POST", vm_path(args->name) + "/snapshots/" + args->snapshot + "/restore", body)));
  });

  auto* unsnap_cmd = vm->add_subcommand("snapshot-delete", "Delete a snapshot: vm snapshot-delete NAME SNAPSHOT");
  unsnap_cmd->add_option("NAME", args->name)->required();
  unsnap_cmd->add_option("SNAPSHOT", args->snapshot)->required();
  unsnap_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    *exit_status = report(discard(client.call("DELETE", vm_path(args->name) + "/snapshots/" + args->snapshot)));
  });

  auto* clone_cmd = vm->add_subcommand(
      "clone", "Clone a VM: vm clone NAME NEWNAME [--snapshot SNAPSHOT] (a running VM is snapshotted first)");
  clone_cmd->add_option("NAME", args->name)->required();
  clone_cmd->add_option("NEWNAME", args->other)->required();
  clone_cmd->add_option("--snapshot", args->snapshot, "Clone this snapshot (the clone continues from it)");
  clone_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    json body{{"name", args->other}};
    if (!args->snapshot.empty()) body["snapshot"] = args->snapshot;
    *exit_status = report([&]() -> Result<void> {
      const json vm = HV_TRY(client.call("POST", vm_path(args->name) + "/clone", body));
      std::printf("cloned %s as %s (%s)\n", args->name.c_str(), args->other.c_str(), vm.value("state", "").c_str());
      return ok();
    }());
  });

  auto* console_cmd = vm->add_subcommand("console", "Attach to a running VM's console (Ctrl-] detaches)");
  console_cmd->add_option("NAME", args->name)->required();
  console_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    auto socket = client.socket();
    if (!socket) {
      *exit_status = fail(socket.error());
      return;
    }
    ConsoleSession session(*socket);
    *exit_status = report(session.run(args->name));
  });

  auto* shell_cmd = vm->add_subcommand("shell", "A shell in a running VM through its agent");
  shell_cmd->add_option("NAME", args->name)->required();
  shell_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    *exit_status = shell(client, args->name);
  });

  auto* launch_cmd = vm->add_subcommand(
      "launch",
      "From nothing to a shell: create NAME from the default guest (NAT, a data disk at /data, the current "
      "directory shared read-only at the same path) unless it exists, start it unless it runs, wait for its agent "
      "and open a shell in that directory");
  launch_cmd->add_option("NAME", args->name)->required();
  add_create_options(launch_cmd);
  launch_cmd->add_flag("--share-rw", args->share_rw, "Share the current directory writable (default: read-only)");
  launch_cmd->add_flag("--no-share", args->no_share, "Do not share the current directory");
  launch_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    *exit_status = launch(client, *args);
  });
}

void add_net_command(CLI::App& app, int* exit_status) {
  auto args = std::make_shared<VmArgs>();
  auto api = [args] { return ApiClient(args->socket); };
  auto* net = app.add_subcommand("net", "Manage the daemon's internal networks (VMs join with --net internal,name=NAME)");
  net->require_subcommand(1);
  net->add_option("--api-socket", args->socket, "The daemon's API socket (default: the per-user one)");

  auto* create_cmd = net->add_subcommand("create", "Create a network and start its switch");
  create_cmd->add_option("NAME", args->name)->required();
  create_cmd->add_option("--dhcp", args->dhcp, "Serve DHCP for CIDR on it, e.g. 10.5.0.0/24");
  create_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    json body{{"name", args->name}};
    if (!args->dhcp.empty()) body["dhcp"] = args->dhcp;
    *exit_status = report([&]() -> Result<void> {
      HV_TRY(client.call("POST", "/v1/networks", body));
      std::printf("created network %s (VMs join with --net internal,name=%s)\n", args->name.c_str(), args->name.c_str());
      return ok();
    }());
  });

  auto* list_cmd = net->add_subcommand("list", "The networks");
  list_cmd->add_flag("--json", args->json_output, "As JSON");
  list_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    *exit_status = report([&]() -> Result<void> {
      const json networks = HV_TRY(client.call("GET", "/v1/networks"));
      if (args->json_output) {
        std::printf("%s\n", networks.dump(2).c_str());
        return ok();
      }
      std::printf("%-24s %-18s %s\n", "NAME", "DHCP", "SWITCH");
      for (const json& n : networks)
        std::printf("%-24s %-18s %s\n", n.value("name", "").c_str(),
                    n.value("dhcp", "").empty() ? "-" : n.value("dhcp", "").c_str(),
                    n.value("running", false) ? "running" : "stopped");
      return ok();
    }());
  });

  auto* delete_cmd = net->add_subcommand("delete", "Delete a network no VM uses");
  delete_cmd->add_option("NAME", args->name)->required();
  delete_cmd->callback([args, api, exit_status] {
    ApiClient client = api();
    *exit_status = report(discard(client.call("DELETE", "/v1/networks/" + args->name)));
  });
}

}  // namespace hostvisor::cli
