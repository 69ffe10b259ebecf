#include "net/slirp/slirp_backend.h"

#include <arpa/inet.h>
#include <libslirp.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <limits>

#include "base/log.h"
#include "net/internet_checksum.h"
#include "net/slirp/slirp_library.h"
#include "net/tcp_segmentation.h"

namespace hostvisor::net {

namespace {
constexpr size_t kEthernetHeaderSize = 14;
// Host numbers inside the NAT's network, as QEMU numbers them (the
// gateway's is in SlirpBackendLimits).
constexpr uint32_t kDnsHost = 3;
constexpr uint32_t kFirstDhcpHost = 15;
// Ready events taken from the epoll set per pass; more wait for the next.
constexpr int kReadyEventsPerPass = 64;

int slirp_events_from_epoll(uint32_t events) {
  int out = 0;
  if (events & EPOLLIN) out |= SLIRP_POLL_IN;
  if (events & EPOLLOUT) out |= SLIRP_POLL_OUT;
  if (events & EPOLLPRI) out |= SLIRP_POLL_PRI;
  if (events & EPOLLERR) out |= SLIRP_POLL_ERR;
  if (events & EPOLLHUP) out |= SLIRP_POLL_HUP;
  return out;
}

// Errors and hang-ups are always reported by epoll; they need no asking.
uint32_t epoll_events_from_slirp(int events) {
  uint32_t out = 0;
  if (events & SLIRP_POLL_IN) out |= EPOLLIN;
  if (events & SLIRP_POLL_OUT) out |= EPOLLOUT;
  if (events & SLIRP_POLL_PRI) out |= EPOLLPRI;
  return out;
}

in_addr to_in_addr(Ipv4Address address) {
  in_addr out{};
  out.s_addr = htonl(address.value);
  return out;
}

in6_addr parse_in6(const char* text) {
  in6_addr out{};
  ::inet_pton(AF_INET6, text, &out);
  return out;
}

// Copies packet[offset, offset + out.size()) out of the scattered packet; the caller checked the length.
void copy_out(std::span<const iovec> packet, size_t offset, std::span<uint8_t> out) {
  size_t done = 0;
  for (const iovec& part : packet) {
    if (done == out.size()) return;
    if (offset >= part.iov_len) {
      offset -= part.iov_len;
      continue;
    }
    const size_t n = std::min(part.iov_len - offset, out.size() - done);
    std::memcpy(out.data() + done, static_cast<const uint8_t*>(part.iov_base) + offset, n);
    done += n;
    offset = 0;
  }
}

// libslirp 4.7.0's IPv4 reassembly crashes the process on a single frame
// (a last fragment with a non-zero offset and nothing before it; found by
// fuzz/slirp_frames), so no fragment reaches it. A guest's TCP never
// fragments (it does path MTU discovery); what is lost is UDP and ICMP
// datagrams larger than the 1500-byte MTU. IPv6 fragments slirp drops itself.
bool is_ipv4_fragment(std::span<const iovec> packet, size_t frame_length) {
  constexpr size_t kFlagsAndOffset = kEthernetHeaderSize + 6;  // in the IPv4 header
  if (frame_length < kFlagsAndOffset + 2) return false;
  uint8_t ether_type[2], flags_and_offset[2];
  copy_out(packet, kVnetHeaderSize + 12, ether_type);
  if (ether_type[0] != 0x08 || ether_type[1] != 0x00) return false;
  copy_out(packet, kVnetHeaderSize + kFlagsAndOffset, flags_and_offset);
  // More-fragments (0x2000) or a fragment offset (0x1fff).
  return ((flags_and_offset[0] << 8 | flags_and_offset[1]) & 0x3fff) != 0;
}

Result<void> watch(int epoll, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev) < 0) return Error::from_errno("user network: epoll_ctl");
  return ok();
}
}  // namespace

struct SlirpBackend::Timer {
  SlirpTimerId id;
  void* cb_opaque;
  int64_t expire_ms = -1;  // on slirp's clock; -1: not armed
};

// libslirp's callbacks; `opaque` is the backend. All run on the loop thread
// (inside service()) or in create() and the destructor.
struct SlirpBackend::Callbacks {
  static SlirpBackend& backend(void* opaque) { return *static_cast<SlirpBackend*>(opaque); }

  static ssize_t send_packet(const void* frame, size_t length, void* opaque) {
    SlirpBackend& self = backend(opaque);
    VirtioNetHeader header{};  // slirp's frames are plain and fully checksummed
    const iovec packet[] = {{&header, sizeof header}, {const_cast<void*>(frame), length}};
    if (length > kMaxFrameSize || !self.receive_queue_->push(packet)) self.counters_.count_rx_drop();
    return static_cast<ssize_t>(length);
  }
  static void guest_error(const char* message, void*) { HV_LOG_DEBUG("user network: guest error: {}", message); }
  static int64_t clock_get_ns(void*) { return now_ns(); }
  static void* timer_new_opaque(SlirpTimerId id, void* cb_opaque, void* opaque) {
    auto& timers = backend(opaque).timers_;
    timers.push_back(std::make_unique<Timer>(Timer{id, cb_opaque}));
    return timers.back().get();
  }
  static void timer_free(void* timer, void* opaque) {
    std::erase_if(backend(opaque).timers_, [timer](const auto& t) { return t.get() == timer; });
  }
  // Every slirp call is in a pass that ends by re-arming the timerfd, so
  // recording the expiry is enough.
  static void timer_mod(void* timer, int64_t expire_ms, void*) { static_cast<Timer*>(timer)->expire_ms = expire_ms; }
  // Sockets are (re)announced by slirp_pollfds_fill() on every pass.
  static void register_poll_fd(int, void*) {}
  // Before slirp closes an fd: its number may come back as another socket.
  static void unregister_poll_fd(int fd, void* opaque) { backend(opaque).forget_socket(fd); }
  // Every pass ends by asking slirp what to poll, which is what a kick is for.
  static void notify(void*) {}

  static int add_poll(int fd, int events, void* opaque) {
    SlirpBackend& self = backend(opaque);
    if (fd < 0) return -1;
    const size_t slot = static_cast<size_t>(fd);
    if (slot >= self.polled_index_by_fd_.size()) {
      self.polled_index_by_fd_.resize(slot + 1, -1);
      self.watched_events_by_fd_.resize(slot + 1, 0);
    }
    const int index = static_cast<int>(self.polled_.size());
    self.polled_.push_back({fd, events, 0});
    self.polled_index_by_fd_[slot] = index;
    return index;
  }
  static int get_revents(int index, void* opaque) {
    const auto& polled = backend(opaque).polled_;
    return index >= 0 && static_cast<size_t>(index) < polled.size() ? polled[static_cast<size_t>(index)].ready_events
                                                                    : 0;
  }
};

SlirpBackend::SlirpBackend(const SlirpBackendLimits& limits) : limits_(limits) {}

Result<std::unique_ptr<SlirpBackend>> SlirpBackend::create(const UserNetOption& option,
                                                           const SlirpBackendLimits& limits) {
  std::unique_ptr<SlirpBackend> backend(new SlirpBackend(limits));
  HV_TRY(backend->start(option));
  return backend;
}

Result<void> SlirpBackend::start(const UserNetOption& option) {
  lib_ = HV_TRY(slirp_library());
  const int epoll = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) return Error::from_errno("user network: epoll_create1");
  epoll_.reset(epoll);
  const int timer = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer < 0) return Error::from_errno("user network: timerfd_create");
  timer_fd_.reset(timer);
  transmit_queue_ = HV_TRY(PacketQueue::create(limits_.transmit_queue_packets, limits_.queue_bytes));
  receive_queue_ = HV_TRY(PacketQueue::create(limits_.receive_queue_packets, limits_.queue_bytes));
  HV_TRY(watch(epoll_.get(), timer_fd_.get(), EPOLLIN));
  HV_TRY(watch(epoll_.get(), transmit_queue_->event_fd(), EPOLLIN));
  frame_.resize(kMaxPacketSize);

  // slirp keeps the pointer: the table outlives every instance.
  static const SlirpCb kCallbacks = [] {
    SlirpCb cb{};
    cb.send_packet = &Callbacks::send_packet;
    cb.guest_error = &Callbacks::guest_error;
    cb.clock_get_ns = &Callbacks::clock_get_ns;
    cb.timer_free = &Callbacks::timer_free;
    cb.timer_mod = &Callbacks::timer_mod;
    cb.register_poll_fd = &Callbacks::register_poll_fd;
    cb.unregister_poll_fd = &Callbacks::unregister_poll_fd;
    cb.notify = &Callbacks::notify;
    cb.timer_new_opaque = &Callbacks::timer_new_opaque;
    return cb;
  }();

  const Ipv4Network& network = option.network;
  SlirpConfig config{};
  config.version = 4;  // timer_new_opaque, disable_dns and disable_dhcp
  config.restricted = option.restrict ? 1 : 0;
  config.in_enabled = true;
  config.vnetwork = to_in_addr(network.base);
  config.vnetmask = to_in_addr({network.mask()});
  config.vhost = to_in_addr(network.host(limits_.gateway_host));
  const uint32_t after_gateway = limits_.gateway_host + 1;
  config.vnameserver = to_in_addr(network.host(limits_.serve_dhcp ? kDnsHost : after_gateway));
  config.vdhcp_start = to_in_addr(network.host(limits_.serve_dhcp ? kFirstDhcpHost : after_gateway));
  config.disable_dhcp = !limits_.serve_dhcp;
  config.in6_enabled = option.ipv6;
  config.vprefix_addr6 = parse_in6("fec0::");
  config.vprefix_len = 64;
  config.vhost6 = parse_in6("fec0::2");
  config.vnameserver6 = parse_in6("fec0::3");
  config.if_mtu = kMtu;
  config.if_mru = kMtu;
  config.disable_dns = !limits_.forward_dns;
  slirp_ = lib_->new_instance(&config, &kCallbacks, this);
  if (!slirp_) return Error(ErrorCode::kInternal, "user network: libslirp refused its configuration");
  for (const HostForward& forward : option.forwards) HV_TRY(add_forward(forward));
  refill_poll_set();
  return ok();
}

Result<void> SlirpBackend::add_forward(const HostForward& forward) {
  const bool udp = forward.protocol == ForwardProtocol::kUdp;
  // slirp reads an address of 0 as "the first DHCP address".
  const in_addr guest = to_in_addr(forward.guest_address.value_or(Ipv4Address{0}));
  errno = 0;
  if (lib_->add_hostfwd(slirp_, udp, to_in_addr(forward.host_address), forward.host_port, guest, forward.guest_port) ==
      0) {
    refill_poll_set();  // the new listening socket joins the poll set
    return ok();
  }
  const int err = errno;
  const std::string where = format_ipv4_address(forward.host_address) + ":" + std::to_string(forward.host_port);
  std::string why = err ? std::strerror(err) : "libslirp refused it";
  if (err == EADDRINUSE) why = "the port is taken by another socket; pick another HOSTPORT";
  if (err == EADDRNOTAVAIL) why = "no interface of this host has that address";
  // Landlock (docs/sandbox.md): the ports were fixed when the VM started.
  if (err == EACCES && !udp)
    why = std::string(forward.host_port < 1024 ? "a port below 1024 needs CAP_NET_BIND_SERVICE, and " : "") +
          "the sandboxed VM may listen only on the TCP ports of its --net hostfwd= and --sandbox-bind PORT (or any)";
  return Error(ErrorCode::kBusy, "hostfwd=" + format_host_forward(forward) + ": cannot listen on " + where + " (" +
                                     (udp ? "udp" : "tcp") + "): " + why);
}

bool SlirpBackend::remove_forward(const HostForward& forward) {
  const bool removed = lib_->remove_hostfwd(slirp_, forward.protocol == ForwardProtocol::kUdp,
                                            to_in_addr(forward.host_address), forward.host_port) == 0;
  refill_poll_set();
  return removed;
}

SlirpBackend::~SlirpBackend() {
  if (slirp_) lib_->cleanup(slirp_);
}

Result<void> SlirpBackend::send(std::span<const iovec> packet) {
  size_t length = 0;
  for (const iovec& part : packet) length += part.iov_len;
  if (length < kVnetHeaderSize + kEthernetHeaderSize || length > kMaxPacketSize) {
    counters_.count_tx_drop();
    return Error(ErrorCode::kInvalidArgument, "user network: a packet of " + std::to_string(length) +
                                                  " bytes is not a header and an Ethernet frame; dropped");
  }
  VirtioNetHeader header{};
  copy_out(packet, 0, {reinterpret_cast<uint8_t*>(&header), sizeof header});
  const size_t frame_length = length - kVnetHeaderSize;
  if (is_ipv4_fragment(packet, frame_length)) {
    counters_.count_tx_drop();
    return Error(ErrorCode::kUnsupported, "user network: IPv4 fragments are not taken; dropped");
  }
  const auto gso = static_cast<uint8_t>(header.gso_type & ~kGsoEcn);
  if (header.gso_type != kGsoNone && ((gso != kGsoTcpV4 && gso != kGsoTcpV6) || header.gso_size < kMinimumGsoSize)) {
    counters_.count_tx_drop();
    return Error(ErrorCode::kUnsupported, "user network: only TCP segmentation offload with an MSS of at least " +
                                              std::to_string(kMinimumGsoSize) + " is taken; dropped");
  }
  if ((header.flags & kHeaderNeedsCsum) &&
      (header.csum_start > frame_length || frame_length - header.csum_start < size_t{header.csum_offset} + 2)) {
    counters_.count_tx_drop();
    return Error(ErrorCode::kInvalidArgument, "user network: a partial checksum outside the frame; dropped");
  }
  if (!transmit_queue_->push(packet)) {
    counters_.count_tx_drop();
    return Error(ErrorCode::kBusy, "user network: transmit queue full; packet dropped");
  }
  counters_.count_tx(frame_length);
  return ok();
}

Result<void> SlirpBackend::set_receive_offloads(const ReceiveOffloads& offloads) {
  // slirp never makes GSO frames, so segmentation offers change nothing.
  receive_checksum_offload_ = offloads.csum;
  return ok();
}

Result<std::optional<size_t>> SlirpBackend::receive(std::span<uint8_t> buffer) {
  const std::optional<size_t> length = receive_queue_->pop(buffer);
  if (!length || *length < kVnetHeaderSize) return length;
  counters_.count_rx(*length - kVnetHeaderSize);
  // slirp computed every checksum itself: the guest need not check them.
  if (receive_checksum_offload_) buffer[offsetof(VirtioNetHeader, flags)] = kHeaderDataValid;
  return length;
}

void SlirpBackend::service() {
  // Sockets first, with the readiness seen against the last pass's poll set
  // (its indexes are slirp's): a frame handed over below may close a socket.
  if (polled_once_) {
    collect_ready_sockets();
    lib_->pollfds_poll(slirp_, 0, &Callbacks::get_revents, this);
  }
  run_expired_timers();
  transmit_queued_frames();
  refill_poll_set();
}

void SlirpBackend::collect_ready_sockets() {
  epoll_event events[kReadyEventsPerPass];
  const int n = ::epoll_wait(epoll_.get(), events, kReadyEventsPerPass, 0);
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    if (fd < 0 || static_cast<size_t>(fd) >= polled_index_by_fd_.size()) continue;  // the timer, the queue
    const int32_t index = polled_index_by_fd_[static_cast<size_t>(fd)];
    if (index >= 0) polled_[static_cast<size_t>(index)].ready_events = slirp_events_from_epoll(events[i].events);
  }
}

void SlirpBackend::run_expired_timers() {
  const int64_t now_ms = now_ns() / 1'000'000;
  // Collected first: a handler may re-arm or add timers.
  std::vector<Timer> due;
  for (const auto& timer : timers_) {
    if (timer->expire_ms >= 0 && timer->expire_ms <= now_ms) {
      due.push_back(*timer);
      timer->expire_ms = -1;
    }
  }
  for (const Timer& timer : due) lib_->handle_timer(slirp_, timer.id, timer.cb_opaque);
}

void SlirpBackend::transmit_queued_frames() {
  // At most one queue's worth per pass, so a guest that keeps sending cannot
  // keep the loop from its sockets and other devices.
  for (size_t i = 0; i < transmit_queue_->max_packets(); ++i) {
    const std::optional<size_t> length = transmit_queue_->pop(frame_);
    if (!length) return;
    VirtioNetHeader header;
    std::memcpy(&header, frame_.data(), kVnetHeaderSize);
    const std::span<uint8_t> frame(frame_.data() + kVnetHeaderSize, *length - kVnetHeaderSize);
    if (header.gso_type != kGsoNone) {
      // Segments get their checksums computed whole.
      const bool cut = segment_tcp(frame, header, segment_, [this](std::span<const uint8_t> segment) {
        lib_->input(slirp_, segment.data(), static_cast<int>(segment.size()));
      });
      if (!cut) counters_.count_tx_drop();
      continue;
    }
    // send() checked the offsets; slirp wants finished checksums.
    if (header.flags & kHeaderNeedsCsum) complete_partial_checksum(frame, header.csum_start, header.csum_offset);
    lib_->input(slirp_, frame.data(), static_cast<int>(frame.size()));
  }
}

void SlirpBackend::refill_poll_set() {
  for (const PolledSocket& socket : polled_) polled_index_by_fd_[static_cast<size_t>(socket.fd)] = -1;
  polled_.clear();
  uint32_t timeout_ms = std::numeric_limits<uint32_t>::max();
  lib_->pollfds_fill(slirp_, &timeout_ms, &Callbacks::add_poll, this);
  polled_once_ = true;

  // Make the epoll set say what slirp asked for: only changes cost a call.
  for (const PolledSocket& socket : polled_) watch_socket(socket.fd, epoll_events_from_slirp(socket.slirp_events));
  std::erase_if(watched_fds_, [this](int fd) {
    const int32_t index = polled_index_by_fd_[static_cast<size_t>(fd)];
    if (index >= 0 && epoll_events_from_slirp(polled_[static_cast<size_t>(index)].slirp_events) != 0) return false;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    watched_events_by_fd_[static_cast<size_t>(fd)] = 0;
    return true;
  });
  arm_timer(timeout_ms);
}

void SlirpBackend::watch_socket(int fd, uint32_t events) {
  uint32_t& watched = watched_events_by_fd_[static_cast<size_t>(fd)];
  if (events == 0 || events == watched) return;  // an fd wanted for nothing leaves the set in refill_poll_set()
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  int op = watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (::epoll_ctl(epoll_.get(), op, fd, &ev) < 0) {
    // The set and our table disagree (an fd slirp closed without telling):
    // try the other operation once.
    op = op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (::epoll_ctl(epoll_.get(), op, fd, &ev) < 0) {
      HV_LOG_WARN("user network: cannot poll socket {}: {}", fd, std::strerror(errno));
      return;
    }
  }
  if (!watched) watched_fds_.push_back(fd);
  watched = events;
}

void SlirpBackend::forget_socket(int fd) {
  if (fd < 0 || static_cast<size_t>(fd) >= watched_events_by_fd_.size()) return;
  if (watched_events_by_fd_[static_cast<size_t>(fd)] != 0) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    watched_events_by_fd_[static_cast<size_t>(fd)] = 0;
    std::erase(watched_fds_, fd);
  }
}

void SlirpBackend::arm_timer(uint32_t timeout_ms) {
  int64_t deadline_ms = now_ns() / 1'000'000 + timeout_ms;
  for (const auto& timer : timers_)
    if (timer->expire_ms >= 0) deadline_ms = std::min(deadline_ms, timer->expire_ms);
  itimerspec when{};
  const int64_t deadline_ns = std::max<int64_t>(deadline_ms * 1'000'000, 1);
  when.it_value.tv_sec = deadline_ns / 1'000'000'000;
  when.it_value.tv_nsec = deadline_ns % 1'000'000'000;
  ::timerfd_settime(timer_fd_.get(), TFD_TIMER_ABSTIME, &when, nullptr);
}

int64_t SlirpBackend::now_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

Result<std::vector<uint8_t>> SlirpBackend::save_state() {
  std::vector<uint8_t> state;
  const uint32_t version = static_cast<uint32_t>(lib_->state_version());
  state.resize(sizeof version);
  std::memcpy(state.data(), &version, sizeof version);
  lib_->state_save(
      slirp_,
      [](const void* buf, size_t len, void* opaque) -> ssize_t {
        auto* out = static_cast<std::vector<uint8_t>*>(opaque);
        const auto* bytes = static_cast<const uint8_t*>(buf);
        out->insert(out->end(), bytes, bytes + len);
        return static_cast<ssize_t>(len);
      },
      &state);
  return state;
}

Result<void> SlirpBackend::load_state(std::span<const uint8_t> state) {
  if (state.empty()) return ok();
  uint32_t version = 0;
  if (state.size() < sizeof version) return Error(ErrorCode::kCorrupt, "user network: its saved state is truncated");
  std::memcpy(&version, state.data(), sizeof version);
  if (version > static_cast<uint32_t>(lib_->state_version()))
    return Error(ErrorCode::kUnsupported, "user network: the saved state (libslirp version " + std::to_string(version) +
                                              ") is newer than this libslirp's (" +
                                              std::to_string(lib_->state_version()) + ")");
  struct Reader {
    std::span<const uint8_t> rest;
  } reader{state.subspan(sizeof version)};
  const int r = lib_->state_load(
      slirp_, static_cast<int>(version),
      [](void* buf, size_t len, void* opaque) -> ssize_t {
        auto* in = static_cast<Reader*>(opaque);
        // A short read is an error to libslirp: it stops and fails.
        const size_t n = std::min(len, in->rest.size());
        std::memcpy(buf, in->rest.data(), n);
        in->rest = in->rest.subspan(n);
        return n == len ? static_cast<ssize_t>(n) : -1;
      },
      &reader);
  if (r < 0)
    return Error(ErrorCode::kCorrupt,
                 "user network: libslirp refused the saved state (" + std::string(std::strerror(-r)) + ")");
  return ok();
}

}  // namespace hostvisor::net
