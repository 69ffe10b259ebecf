#include "net/host_only/host_only_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/fd.h"
#include "base/log.h"
#include "base/log_rate_limit.h"
#include "net/dhcp/dhcp_server.h"
#include "net/host_interface/link_control.h"
#include "net/host_interface/routing_rules.h"
#include "net/switch/network_lock.h"
#include "net/tap/bridge_port.h"

namespace hostvisor::net {

std::string host_only_bridge_name(const std::string& name) { return "hv-" + name; }

namespace {
constexpr size_t kPacketsPerWake = 64;

Result<void> write_sysctl(const std::string& path, const char* value) {
  std::ofstream file(path);
  file << value;
  file.close();
  if (!file) return Error(ErrorCode::kIo, "cannot write " + path);
  return ok();
}
}  // namespace

class HostOnlyServer::Impl {
 public:
  explicit Impl(const HostOnlyServerOptions& options) : options_(options) {}
  ~Impl() {
    tap_.reset();  // its port leaves the bridge first
    if (rules_added_) {
      if (auto r = remove_host_only_rules(options_.bridge, options_.network); !r)
        HV_LOG_WARN("host-only: {}", r.error().message());
    }
    if (bridge_made_) {
      if (auto r = delete_bridge(options_.bridge); !r) HV_LOG_WARN("host-only: {}", r.error().message());
    }
    // Still under the lock, with the host as it was: the network's files go
    // (network_lock.h).
    if (lock_.valid()) remove_network_files(options_.lock_path, options_.log_path);
  }

  Result<void> start();
  Result<void> run();

 private:
  void serve_tap();
  bool ready_to_exit();

  HostOnlyServerOptions options_;
  bool bridge_made_ = false;
  bool rules_added_ = false;
  std::unique_ptr<TapBackend> tap_;
  std::optional<dhcp::DhcpServer> dhcp_;
  UniqueFd listen_, epoll_;
  std::unordered_map<int, UniqueFd> members_;
  bool ever_joined_ = false;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::vector<uint8_t> packet_ = std::vector<uint8_t>(kMaxPacketSize);
  UniqueFd lock_;  // held from the decision to exit until the bridge is gone
};

Result<void> HostOnlyServer::Impl::start() {
  const std::string& bridge = options_.bridge;
  // No server answers for this network (the caller holds its lock and found
  // no socket): a bridge by that name is a crashed server's.
  if (interface_index(bridge).ok()) HV_TRY(delete_bridge(bridge));
  HV_TRY(create_bridge(bridge));
  bridge_made_ = true;
  HV_TRY(set_ipv4_address(bridge, options_.network.host(1), options_.network));
  HV_TRY(write_sysctl("/proc/sys/net/ipv4/conf/" + bridge + "/forwarding", "0"));
  // The flag above goes back on when the host turns ip_forward on; these
  // rules hold whatever the host's forwarding (routing_rules.h).
  rules_added_ = true;
  HV_TRY(add_host_only_rules(bridge, options_.network));
  HV_TRY(write_sysctl("/proc/sys/net/ipv6/conf/" + bridge + "/disable_ipv6", "1"));
  HV_TRY(set_link_up(bridge));
  tap_ = HV_TRY(open_bridge_port(bridge));
  dhcp_ = HV_TRY(dhcp::DhcpServer::create(
      {.network = options_.network, .server = options_.network.host(2), .reserved = {options_.network.host(1)}}));

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options_.socket_path.size() >= sizeof addr.sun_path)
    return Error(ErrorCode::kInvalidArgument, "socket path too long: " + options_.socket_path);
  std::memcpy(addr.sun_path, options_.socket_path.c_str(), options_.socket_path.size() + 1);
  ::unlink(options_.socket_path.c_str());
  listen_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listen_.valid() || ::bind(listen_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_.get(), 64) != 0)
    return Error::from_errno("listening on " + options_.socket_path);
  epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return Error::from_errno("epoll_create1");
  for (int fd : {listen_.get(), tap_->receive_fd()}) {
    epoll_event ev{EPOLLIN, {.fd = fd}};
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return Error::from_errno("epoll_ctl");
  }
  return ok();
}

void HostOnlyServer::Impl::serve_tap() {
  for (size_t i = 0; i < kPacketsPerWake; ++i) {
    auto got = tap_->receive(packet_);
    if (!got || !got->has_value()) return;
    const size_t length = **got;
    if (length <= kVnetHeaderSize || length >= packet_.size()) continue;
    const auto frame = std::span<const uint8_t>(packet_).subspan(kVnetHeaderSize, length - kVnetHeaderSize);
    auto reply = dhcp_->handle_frame(frame, dhcp::Clock::now());
    if (!reply) continue;
    const VirtioNetHeader plain{};
    const iovec parts[2] = {{const_cast<VirtioNetHeader*>(&plain), sizeof plain}, {reply->data(), reply->size()}};
    if (auto sent = tap_->send(parts); !sent)
      HV_LOG_DEBUG("host-only: a DHCP reply was lost: {}", sent.error().message());
  }
}

bool HostOnlyServer::Impl::ready_to_exit() {
  if (!members_.empty()) return false;
  return ever_joined_ || std::chrono::steady_clock::now() - started_ > options_.idle_grace;
}

Result<void> HostOnlyServer::Impl::run() {
  epoll_event events[16];
  for (;;) {
    const int n = ::epoll_wait(epoll_.get(), events, 16, 1000);
    if (n < 0 && errno != EINTR) return Error::from_errno("epoll_wait");
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == listen_.get()) {
        for (int conn; (conn = ::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
          epoll_event ev{EPOLLIN | EPOLLRDHUP, {.fd = conn}};
          if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, conn, &ev) != 0) {
            ::close(conn);
            continue;
          }
          members_.emplace(conn, UniqueFd(conn));
          ever_joined_ = true;
          HV_LOG_INFO_LIMITED("host-only {}: a VM joined ({} now)", options_.bridge, members_.size());
        }
      } else if (fd == tap_->receive_fd()) {
        serve_tap();
      } else if (auto member = members_.find(fd); member != members_.end()) {
        // A VM sends nothing: anything readable is its end (or noise to drop).
        char byte[256];
        const ssize_t got = ::read(fd, byte, sizeof byte);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
          ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
          members_.erase(member);
          HV_LOG_INFO_LIMITED("host-only {}: a VM left ({} now)", options_.bridge, members_.size());
        }
      }
    }
    if (!ready_to_exit()) continue;
    // Decide under the lock VMs hold while they connect: none can be
    // joining now, and the next one starts a new server after we are gone.
    if (options_.lock_path.empty()) return ok();
    auto lock = HV_TRY(lock_network(options_.lock_path));
    pollfd pending{listen_.get(), POLLIN, 0};
    if (::poll(&pending, 1, 0) == 1) continue;  // a VM connected meanwhile: serve it
    ::unlink(options_.socket_path.c_str());
    listen_ = UniqueFd();
    // The bridge goes (in the destructor) before the lock is let go.
    lock_ = std::move(lock);
    return ok();
  }
}

HostOnlyServer::HostOnlyServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HostOnlyServer::~HostOnlyServer() = default;

Result<std::unique_ptr<HostOnlyServer>> HostOnlyServer::create(const HostOnlyServerOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  HV_TRY(impl->start());
  return std::unique_ptr<HostOnlyServer>(new HostOnlyServer(std::move(impl)));
}

Result<void> HostOnlyServer::run() { return impl_->run(); }

}  // namespace hostvisor::net
