#include "net/switch/switch_server.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <unordered_map>

#include "base/log.h"
#include "base/log_rate_limit.h"
#include "net/dhcp/dhcp_server.h"
#include "net/host_only/host_gateway.h"
#include "net/switch/network_lock.h"
#include "net/switch/stream_framing.h"
#include "net/switch/stream_output_queue.h"
#include "net/switch/switch_control.h"

namespace hostvisor::net {

namespace {
using Clock = SwitchClock;
constexpr size_t kReadsPerWake = 16;  // per port, so one busy port cannot starve the others
constexpr size_t kDhcpReplies = 64;
constexpr size_t kGatewayFramesPerWake = 256;
constexpr int kSocketBuffer = 1 << 20;

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return Error(ErrorCode::kInvalidArgument, "socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// A connection to the switch: a VM, a QEMU -netdev stream peer.
struct StreamPort final : SwitchPortSink {
  StreamPort(UniqueFd f, size_t output_bytes, Clock::time_point now, const Clock::time_point* clock, uint64_t* drops)
      : fd(std::move(f)), output(output_bytes), accepted(now), last_progress(now), now_(clock), dropped(drops) {}

  void deliver(const VirtioNetHeader& header, std::span<const uint8_t> frame) override {
    if (!closing.empty()) return;
    const bool was_empty = output.empty();
    const bool pushed =
        headers
            ? output.push({std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&header), sizeof header), frame})
            : output.push({frame});
    if (!pushed) {
      ++*dropped;
      return;
    }
    if (was_empty) last_progress = *now_;
  }

  UniqueFd fd;
  StreamFrameReader reader{kEthernetHeaderSize, kMaxPlainFrameSize};
  StreamOutputQueue output;
  PortId id = 0;  // 0 until it joins the switch
  bool headers = false;
  std::optional<MacAddress> announced;  // the MAC its Hello named
  std::vector<HostForward> forwards;    // in place on the host gateway, removed when it goes
  bool watching_output = false;
  Clock::time_point accepted, last_progress;
  std::string closing;  // why it must go; empty while it is fine
  const Clock::time_point* now_;
  uint64_t* dropped;
};

// The DHCP server as a port: frames in, replies queued for the loop to forward.
struct DhcpPort final : SwitchPortSink {
  explicit DhcpPort(dhcp::DhcpServer s, const Clock::time_point* clock) : server(std::move(s)), now_(clock) {}
  void deliver(const VirtioNetHeader&, std::span<const uint8_t> frame) override {
    if (replies.size() >= kDhcpReplies) return;
    if (auto reply = server.handle_frame(frame, *now_)) replies.push_back(std::move(*reply));
  }
  dhcp::DhcpServer server;
  std::deque<std::vector<uint8_t>> replies;
  const Clock::time_point* now_;
  PortId id = 0;
};
}  // namespace

class SwitchServer::Impl {
 public:
  explicit Impl(const SwitchServerOptions& options) : options_(options), switch_(options.limits) {}

  Result<void> start();
  Result<void> run();
  void stop() { stop_event_->signal(); }
  SwitchServerCounters counters() const {
    SwitchServerCounters c = counters_;
    c.forwarding = switch_.counters();
    if (gateway_) c.gateway_refused = gateway_->refused();
    return c;
  }

 private:
  void accept_connections();
  void serve_input(StreamPort& port);
  void take_frame(StreamPort& port, std::span<const uint8_t> bytes);
  void join(StreamPort& port, SwitchPortMode mode);
  void answer_forward(StreamPort& port, const HostForward& wanted);
  void pump_gateway();
  void forward(PortId from, const VirtioNetHeader& header, std::span<const uint8_t> frame);
  void flush(StreamPort& port);
  void close_port(int fd, const std::string& why);
  void housekeeping();
  bool ready_to_exit();
  void watch_output(StreamPort& port, bool want);

  SwitchServerOptions options_;
  EthernetSwitch switch_;
  UniqueFd listen_;
  UniqueFd epoll_;
  std::optional<EventFd> stop_event_;
  struct stat socket_stat_ {};
  std::unordered_map<int, std::unique_ptr<StreamPort>> ports_;
  std::unique_ptr<DhcpPort> dhcp_;
  std::unique_ptr<HostGateway> gateway_;
  PortId gateway_id_ = 0;
  std::vector<uint8_t> gateway_packet_;
  Clock::time_point now_ = Clock::now();
  Clock::time_point started_ = now_, last_housekeeping_ = now_;
  bool ever_connected_ = false;
  SwitchServerCounters counters_;
};

Result<void> SwitchServer::Impl::start() {
  const sockaddr_un addr = HV_TRY(unix_address(options_.socket_path));
  {
    // A switch already answering here keeps its socket; a stale file goes.
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.valid() && ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
      return Error(ErrorCode::kBusy, "a switch is already running on " + options_.socket_path);
  }
  ::unlink(options_.socket_path.c_str());
  listen_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listen_.valid()) return Error::from_errno("creating the switch socket");
  if (::bind(listen_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    return Error::from_errno("binding " + options_.socket_path);
  if (::listen(listen_.get(), 64) != 0) return Error::from_errno("listening on " + options_.socket_path);
  if (::stat(options_.socket_path.c_str(), &socket_stat_) != 0) return Error::from_errno(options_.socket_path);

  epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return Error::from_errno("epoll_create1");
  stop_event_ = HV_TRY(EventFd::create(0, EFD_NONBLOCK));
  for (int fd : {listen_.get(), stop_event_->fd()}) {
    epoll_event ev{EPOLLIN, {.fd = fd}};
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return Error::from_errno("epoll_ctl");
  }
  if (options_.host_gateway) {
    // The gateway is host 1 (the host's address, as on the privileged
    // form's bridge), the DHCP server host 2.
    const Ipv4Network& network = *options_.host_gateway;
    gateway_ = HV_TRY(HostGateway::create(network));
    gateway_id_ = switch_.add_port(gateway_.get(), HostGateway::kPortMode);
    gateway_packet_.resize(kMaxPacketSize);
    for (int fd : {gateway_->service_fd(), gateway_->receive_fd()}) {
      epoll_event ev{EPOLLIN, {.fd = fd}};
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return Error::from_errno("epoll_ctl");
    }
    auto server = HV_TRY(
        dhcp::DhcpServer::create({.network = network, .server = network.host(2), .reserved = {gateway_->address()}}));
    dhcp_ = std::make_unique<DhcpPort>(std::move(server), &now_);
    dhcp_->id = switch_.add_port(dhcp_.get());
  } else if (options_.dhcp) {
    auto server = HV_TRY(dhcp::DhcpServer::create({.network = *options_.dhcp}));
    dhcp_ = std::make_unique<DhcpPort>(std::move(server), &now_);
    dhcp_->id = switch_.add_port(dhcp_.get());
  }
  return ok();
}

void SwitchServer::Impl::accept_connections() {
  for (;;) {
    UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) HV_LOG_WARN("switch: accept: {}", std::strerror(errno));
      return;
    }
    ever_connected_ = true;
    if (ports_.size() >= options_.max_ports) {
      HV_LOG_WARN_LIMITED("switch: refusing a connection: {} ports is the limit", options_.max_ports);
      continue;
    }
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &kSocketBuffer, sizeof kSocketBuffer);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &kSocketBuffer, sizeof kSocketBuffer);
    const int raw = fd.get();
    epoll_event ev{EPOLLIN, {.fd = raw}};
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, raw, &ev) != 0) {
      HV_LOG_WARN("switch: epoll_ctl: {}", std::strerror(errno));
      continue;
    }
    ports_.emplace(raw, std::make_unique<StreamPort>(std::move(fd), options_.port_output_bytes, now_, &now_,
                                                     &counters_.output_dropped));
  }
}

void SwitchServer::Impl::join(StreamPort& port, SwitchPortMode mode) {
  port.id = switch_.add_port(&port, mode);
  ++counters_.ports_joined;
  HV_LOG_INFO_LIMITED("switch: port {} joined ({}), {} port(s)", port.id,
                      mode.headers ? "hostvisor, virtio-net headers" : "plain", ports_.size());
}

void SwitchServer::Impl::forward(PortId from, const VirtioNetHeader& header, std::span<const uint8_t> frame) {
  switch_.forward(from, header, frame, now_);
  // The DHCP server's answers go out as frames from its own port.
  while (dhcp_ && !dhcp_->replies.empty()) {
    const std::vector<uint8_t> reply = std::move(dhcp_->replies.front());
    dhcp_->replies.pop_front();
    switch_.forward(dhcp_->id, {}, reply, now_);
  }
}

void SwitchServer::Impl::take_frame(StreamPort& port, std::span<const uint8_t> bytes) {
  if (port.id == 0) {
    const auto control = decode_switch_control(bytes);
    if (control && control->type == SwitchControlType::kHello) {
      // The Welcome goes first and plain; every frame after it has a header.
      SwitchControl welcome;
      welcome.type = SwitchControlType::kWelcome;
      const auto& network = options_.host_gateway ? options_.host_gateway : options_.dhcp;
      welcome.dhcp = network ? format_ipv4_network(*network) : "";
      welcome.gateway = gateway_ != nullptr;
      for (const auto& [fd, other] : ports_) welcome.mac_in_use |= other->announced == control->mac;
      port.output.push({encode_switch_control(welcome)});
      if (welcome.mac_in_use) {
        flush(port);
        port.closing = "MAC " + format_mac_address(control->mac) + " is in use by another port";
        return;
      }
      port.announced = control->mac;
      port.headers = true;
      port.reader.set_limits(kVnetHeaderSize + kEthernetHeaderSize, kMaxPacketSize);
      join(port, {true, control->offloads});
      return;
    }
    join(port, {});
  }
  VirtioNetHeader header{};
  std::span<const uint8_t> frame = bytes;
  if (port.headers) {
    std::memcpy(&header, bytes.data(), sizeof header);
    frame = bytes.subspan(sizeof header);
  }
  if (const auto control = decode_switch_control(frame)) {
    // Control frames are never forwarded; only a headered port may change its offloads.
    if (port.headers && control->type == SwitchControlType::kOffloads)
      switch_.set_port_mode(port.id, {true, control->offloads});
    if (port.headers && control->type == SwitchControlType::kForward) answer_forward(port, control->forward);
    return;
  }
  forward(port.id, header, frame);
}

void SwitchServer::Impl::answer_forward(StreamPort& port, const HostForward& wanted) {
  SwitchControl result;
  result.type = SwitchControlType::kForwardResult;
  result.forward = wanted;
  HostForward forward = wanted;
  if (!gateway_) {
    result.text = "this network has no host gateway to forward host ports";
  } else if (port.forwards.size() >= options_.forwards_per_port) {
    result.text = "at most " + std::to_string(options_.forwards_per_port) + " forwards per VM";
  } else if (!forward.guest_address) {
    // The port's own address: the lease its MAC has, or will be offered.
    forward.guest_address = dhcp_->server.address_for(*port.announced, now_);
    if (!forward.guest_address) result.text = "the network's DHCP pool is full";
  }
  if (result.text.empty()) {
    if (auto added = gateway_->add_forward(forward); !added) {
      result.text = added.error().message();
    } else {
      port.forwards.push_back(forward);
      result.forward = forward;
    }
  }
  ++(result.text.empty() ? counters_.forwards_added : counters_.forwards_refused);
  HV_LOG_INFO_LIMITED("switch: port {}: {}", port.id,
                      result.text.empty() ? "hostfwd=" + format_host_forward(forward) + " in place" : result.text);
  port.deliver({}, encode_switch_control(result));
}

void SwitchServer::Impl::pump_gateway() {
  for (size_t i = 0; i < kGatewayFramesPerWake; ++i) {
    const auto length = gateway_->receive(gateway_packet_);
    if (!length) return;
    if (*length < kVnetHeaderSize + kEthernetHeaderSize || *length >= gateway_packet_.size()) continue;
    VirtioNetHeader header;
    std::memcpy(&header, gateway_packet_.data(), sizeof header);
    forward(gateway_id_, header,
            std::span<const uint8_t>(gateway_packet_).subspan(kVnetHeaderSize, *length - kVnetHeaderSize));
  }
}

void SwitchServer::Impl::serve_input(StreamPort& port) {
  for (size_t i = 0; i < kReadsPerWake && port.closing.empty(); ++i) {
    const auto space = port.reader.free_space();
    const ssize_t n = ::recv(port.fd.get(), space.data(), space.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) port.closing = std::string("reading: ") + std::strerror(errno);
      return;
    }
    if (n == 0) {
      auto finished = port.reader.finish();
      port.closing = finished ? "the peer left" : finished.error().message();
      return;
    }
    port.reader.commit(static_cast<size_t>(n));
    for (;;) {
      auto frame = port.reader.next();
      if (!frame) {
        port.closing = "a malformed stream: " + frame.error().message();
        return;
      }
      if (!*frame) break;
      take_frame(port, **frame);
    }
  }
}

void SwitchServer::Impl::watch_output(StreamPort& port, bool want) {
  if (port.watching_output == want) return;
  epoll_event ev{EPOLLIN | (want ? EPOLLOUT : 0u), {.fd = port.fd.get()}};
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, port.fd.get(), &ev) == 0) port.watching_output = want;
}

void SwitchServer::Impl::flush(StreamPort& port) {
  if (port.output.empty() || !port.closing.empty()) return;
  auto written = port.output.flush(port.fd.get());
  if (!written) {
    port.closing = written.error().message();
    return;
  }
  if (*written > 0) port.last_progress = now_;
  watch_output(port, !port.output.empty());
}

void SwitchServer::Impl::close_port(int fd, const std::string& why) {
  const auto it = ports_.find(fd);
  if (it == ports_.end()) return;
  StreamPort& port = *it->second;
  if (port.id != 0) switch_.remove_port(port.id);
  for (const HostForward& forward : port.forwards) gateway_->remove_forward(forward);
  if (why != "the peer left") ++counters_.ports_disconnected;
  HV_LOG_INFO_LIMITED("switch: port {} left: {}; {} port(s) remain", port.id, why, ports_.size() - 1);
  ports_.erase(it);  // closes the fd, which leaves the epoll set
}

void SwitchServer::Impl::housekeeping() {
  if (now_ - last_housekeeping_ < std::chrono::milliseconds(100)) return;
  last_housekeeping_ = now_;
  for (auto& [fd, port] : ports_) {
    // A peer that sent nothing yet (a QEMU guest before its link is up) is a plain port.
    if (port->id == 0 && now_ - port->accepted >= options_.hello_wait) join(*port, {});
    if (!port->output.empty() && now_ - port->last_progress >= options_.stall_timeout)
      port->closing = "it read nothing for " + std::to_string(options_.stall_timeout.count()) + " ms";
  }
  switch_.expire(now_);
}

bool SwitchServer::Impl::ready_to_exit() {
  if (!ports_.empty()) return false;
  if (!ever_connected_ && now_ - started_ < options_.idle_grace) return false;
  // Under the lock VMs take to connect: a VM that connected before we got
  // it is in the listen backlog, and one that comes after finds no socket.
  UniqueFd lock;
  if (!options_.lock_path.empty()) {
    auto locked = lock_network(options_.lock_path);
    if (!locked) HV_LOG_WARN("switch: {}", locked.error().message());
    if (locked) lock = std::move(locked).value();
  }
  accept_connections();
  if (!ports_.empty()) return false;
  struct stat now_stat {};
  if (::stat(options_.socket_path.c_str(), &now_stat) == 0 && now_stat.st_ino == socket_stat_.st_ino &&
      now_stat.st_dev == socket_stat_.st_dev)
    ::unlink(options_.socket_path.c_str());
  listen_.reset();
  // Nothing of this network is left for the next switch of the name to
  // find; one waiting for the lock takes the new file (network_lock.h).
  if (lock.valid()) remove_network_files(options_.lock_path, options_.log_path);
  return true;  // the lock goes with `lock`
}

Result<void> SwitchServer::Impl::run() {
  epoll_event events[64];
  for (;;) {
    // Short ticks while something is timed: a port not joined yet, a queue
    // that may stall, the exit.
    bool timed = ports_.empty();
    for (auto& [fd, port] : ports_) timed |= port->id == 0 || !port->output.empty();
    const int timeout = timed ? 100 : 1000;
    const int n = ::epoll_wait(epoll_.get(), events, 64, timeout);
    if (n < 0 && errno != EINTR) return Error::from_errno("epoll_wait");
    now_ = Clock::now();
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == listen_.get()) {
        accept_connections();
        continue;
      }
      if (stop_event_ && fd == stop_event_->fd()) return ok();
      if (gateway_ && fd == gateway_->service_fd()) gateway_->service();
      if (gateway_ && (fd == gateway_->service_fd() || fd == gateway_->receive_fd())) continue;
      const auto it = ports_.find(fd);
      if (it == ports_.end()) continue;
      StreamPort& port = *it->second;
      if (events[i].events & EPOLLOUT) flush(port);
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) serve_input(port);
    }
    // What the gateway's NAT sends onto the segment (answers, forwarded
    // connections) goes out with this round.
    if (gateway_) pump_gateway();
    housekeeping();
    // Everything queued by this round goes out in one write per port.
    for (auto& [fd, port] : ports_) flush(*port);
    std::vector<std::pair<int, std::string>> closing;
    for (auto& [fd, port] : ports_)
      if (!port->closing.empty()) closing.emplace_back(fd, port->closing);
    for (const auto& [fd, why] : closing) close_port(fd, why);
    if (ready_to_exit()) {
      HV_LOG_INFO("switch: no ports left; exiting");
      return ok();
    }
  }
}

SwitchServer::SwitchServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SwitchServer::~SwitchServer() = default;

Result<std::unique_ptr<SwitchServer>> SwitchServer::create(const SwitchServerOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  HV_TRY(impl->start());
  return std::unique_ptr<SwitchServer>(new SwitchServer(std::move(impl)));
}

Result<void> SwitchServer::run() { return impl_->run(); }
void SwitchServer::stop() { impl_->stop(); }
SwitchServerCounters SwitchServer::counters() const { return impl_->counters(); }

}  // namespace hostvisor::net
