#include "devices/virtio/vsock/virtio_vsock.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "base/log_rate_limit.h"
#include "devices/virtio/virtio_constants.h"
#include "devices/virtio/vsock/vsock_connect_line.h"
#include "devices/virtio/vsock/vsock_unix_socket.h"

namespace hostvisor {

using namespace virtio_vsock;

namespace {

constexpr uint32_t kHeaderSize = sizeof(Header);
constexpr uint32_t kStreamEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

Result<void> check_cid(uint64_t cid) {
  if (cid < kMinGuestCid || cid > kMaxGuestCid)
    return Error(ErrorCode::kInvalidArgument, "vsock cid=" + std::to_string(cid) + ": must be between " +
                                                  std::to_string(kMinGuestCid) + " and " +
                                                  std::to_string(kMaxGuestCid) + " (0-2 and 2^32-1 are reserved)");
  return ok();
}

}  // namespace

Result<std::shared_ptr<VirtioVsock>> VirtioVsock::create(VirtioVsockOptions options) {
  HV_TRY(check_cid(options.guest_cid));
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (epoll.get() < 0) return Error::from_errno("vsock: epoll_create1");
  UniqueFd timer(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (timer.get() < 0) return Error::from_errno("vsock: timerfd_create");
  UniqueFd listener = HV_TRY(vsock::listen_unix(options.uds_path));
  std::shared_ptr<VirtioVsock> device(
      new VirtioVsock(std::move(options), std::move(epoll), std::move(listener), std::move(timer)));
  std::lock_guard lock(device->mutex_);
  HV_TRY(device->watch(device->listener_.get(), Watched{Watched::kListener}, EPOLLIN | EPOLLET));
  HV_TRY(device->watch(device->connect_timer_.get(), Watched{Watched::kConnectTimer}, EPOLLIN));
  return device;
}

VirtioVsock::VirtioVsock(VirtioVsockOptions options, UniqueFd epoll, UniqueFd listener, UniqueFd connect_timer)
    : VirtioDeviceCore(kQueueCount, options.queue_size),
      options_(std::move(options)),
      epoll_(std::move(epoll)),
      listener_(std::move(listener)),
      connect_timer_(std::move(connect_timer)),
      guest_cid_(options_.guest_cid) {}

VirtioVsock::~VirtioVsock() {
  // Ours since listen_unix(): host programs see "no such file", not a dead socket.
  ::unlink(options_.uds_path.c_str());
}

uint64_t VirtioVsock::device_features() const {
  return virtio::feature_bit(kFeatureStream) | virtio::feature_bit(virtio::kFeatureIndirectDesc) |
         virtio::feature_bit(virtio::kFeatureEventIdx);
}

void VirtioVsock::read_config(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  read_config_bytes(Config{guest_cid_}, offset, data);
}

uint64_t VirtioVsock::guest_cid() const {
  std::lock_guard lock(mutex_);
  return guest_cid_;
}

void VirtioVsock::set_guest_cid(uint64_t cid) {
  run_turn([&] {
    guest_cid_ = cid;
    drop_all_streams();
    queue_transport_reset();
    serve_events();
  });
}

size_t VirtioVsock::stream_count() const {
  std::lock_guard lock(mutex_);
  return streams_.size();
}

size_t VirtioVsock::held_connect_count() const {
  std::lock_guard lock(mutex_);
  size_t held = 0;
  for (const auto& [key, stream] : streams_) held += stream.state == StreamState::kHeld;
  return held;
}

// ------------------------------------------------------------------ snapshot

void VirtioVsock::encode_state(StateWriter& out, const State& state) {
  out.put(state.guest_cid);
  out.put(state.next_host_port);
}

VirtioVsock::State VirtioVsock::decode_state(StateReader& in, uint32_t version) {
  State state;
  state.guest_cid = in.get<uint64_t>();
  if (version >= 2) state.next_host_port = in.get<uint32_t>();
  return state;
}

void VirtioVsock::save_state(StateWriter& out) const {
  std::lock_guard lock(mutex_);
  encode_state(out, State{guest_cid_, next_host_port_});
}

Result<void> VirtioVsock::restore_state(StateReader& in, uint32_t version) {
  const State state = decode_state(in, version);
  HV_TRY(in.finish());
  HV_TRY(check_cid(state.guest_cid));
  std::lock_guard lock(mutex_);
  guest_cid_ = state.guest_cid;
  // Go on where the saved run stopped: the guest may still hold sockets
  // with the ports it gave out (until their programs close them), and a
  // REQUEST from one of those would get an RST. A version-1 snapshot did
  // not save the port; its run started at kFirstHostPort, so skip far past
  // anything it can have used.
  if (state.next_host_port >= kFirstHostPort)
    next_host_port_ = state.next_host_port;
  else
    next_host_port_ = kFirstHostPort + (1u << 30);
  // The guest's streams had host sockets that are gone: tell its driver to
  // reset them all (sent once the transport is back and the queue served).
  drop_all_streams();
  queue_transport_reset();
  return ok();
}

// ------------------------------------------------------------------ queues

void VirtioVsock::on_reset() {
  drop_all_streams();
  control_.clear();
  tx_stalled_ = false;
  reset_event_due_ = false;
  reset_ack_avail_.reset();
  hold_abandoned_ = false;
}

void VirtioVsock::serve_queue(uint16_t queue) {
  // Any notification may be the one after the driver's refill (or follow it).
  if (reset_ack_avail_) check_reset_done();
  switch (queue) {
    case kRxQueue: serve_rx(); break;
    case kTxQueue:
      serve_tx();
      serve_rx();
      break;
    case kEventQueue: serve_events(); break;
    default: break;
  }
}

void VirtioVsock::serve_tx() {
  tx_stalled_ = false;
  while (control_.size() < kMaxPendingControl) {
    auto chain = next_chain(kTxQueue);
    if (!chain) return;
    handle_packet(*chain);
    complete(kTxQueue, *chain, 0);
  }
  // The guest is not taking our answers: stop taking its packets (and the
  // answers they would need) until it posts rx buffers.
  tx_stalled_ = true;
}

void VirtioVsock::handle_packet(const DescriptorChain& chain) {
  Header header;
  if (chain.readable_bytes() < kHeaderSize) {
    // Not even a header: there is no one to answer.
    HV_LOG_DEBUG("vsock: tx packet of {} bytes, shorter than a header; dropped", chain.readable_bytes());
    return;
  }
  auto read = chain.read(memory(), 0, std::span(reinterpret_cast<uint8_t*>(&header), kHeaderSize));
  if (!read) return fail_guest_misuse(read.error());
  const uint16_t op = header.op;
  // Never answer an RST with an RST (5.10.6.4): that could ping-pong.
  const bool rst = op == kOpRst;
  const Key key{header.dst_port, header.src_port};
  if (header.src_cid != guest_cid_ || header.dst_cid != kHostCid || header.type != kTypeStream ||
      header.len > kMaxPayload || header.len > chain.readable_bytes() - kHeaderSize) {
    if (!rst) streams_.contains(key) ? reset_stream(key) : answer_rst(header);
    return;
  }
  if (rst) return drop_stream(key);
  if (op == kOpRequest) {
    if (streams_.contains(key)) return reset_stream(key);  // a second REQUEST on a live stream
    return guest_connect(header);
  }
  auto it = streams_.find(key);
  if (it == streams_.end()) return answer_rst(header);
  Stream& stream = it->second;
  stream.credit.peer_update(header.buf_alloc, header.fwd_cnt);
  switch (op) {
    case kOpResponse: {
      if (stream.state != StreamState::kConnecting) return reset_stream(key);
      stream.state = StreamState::kEstablished;
      // The socket is fresh and has room for one short line.
      const std::string line = vsock::ok_line(key.host_port);
      if (::send(stream.fd.get(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
          static_cast<ssize_t>(line.size()))
        return reset_stream(key);
      return;
    }
    case kOpRw:
      if (stream.state != StreamState::kEstablished || stream.guest_sent_all) return reset_stream(key);
      return guest_data(stream, key, chain, header.len);
    case kOpCreditUpdate: return;  // the credit is taken from every packet, above
    case kOpCreditRequest:
      if (!stream.update_queued) {
        stream.update_queued = true;
        queue_control(key, kOpCreditUpdate);
      }
      return;
    case kOpShutdown: return guest_shutdown(stream, key, header.flags);
    default: return reset_stream(key);  // an op this device does not know
  }
}

void VirtioVsock::guest_connect(const Header& header) {
  if (streams_.size() + connect_lines_.size() >= kMaxStreams) {
    HV_LOG_DEBUG("vsock: refusing the guest's connection to port {}: {} streams open", header.dst_port, kMaxStreams);
    return answer_rst(header);
  }
  auto fd = vsock::connect_unix(vsock::port_path(options_.uds_path, header.dst_port));
  if (!fd) {
    HV_LOG_DEBUG("{}", fd.error().message());
    return answer_rst(header);
  }
  const Key key{header.dst_port, header.src_port};
  const int raw = fd->get();
  Stream& stream = streams_.emplace(key, Stream(std::move(fd).value())).first->second;
  stream.state = StreamState::kEstablished;
  stream.credit.peer_update(header.buf_alloc, header.fwd_cnt);
  if (!watch(raw, Watched{Watched::kStream, key}, kStreamEvents)) {
    streams_.erase(key);
    return answer_rst(header);
  }
  queue_control(key, kOpResponse);
}

void VirtioVsock::guest_data(Stream& stream, const Key& key, const DescriptorChain& chain, uint32_t length) {
  if (!stream.credit.receive(length)) {
    HV_LOG_DEBUG("vsock: the guest sent {} bytes beyond its credit on port {}; resetting the stream", length,
                 key.host_port);
    return reset_stream(key);
  }
  if (length == 0) return;
  const size_t old = stream.to_host.size();
  stream.to_host.resize(old + length);
  auto read = chain.read(memory(), kHeaderSize, std::span(stream.to_host).subspan(old));
  if (!read || *read != length) {
    if (!read) fail_guest_misuse(read.error());
    return reset_stream(key);
  }
  if (!flush_to_host(stream)) return reset_stream(key);
  after_flush(stream, key);
}

void VirtioVsock::guest_shutdown(Stream& stream, const Key& key, uint32_t flags) {
  if (flags & kShutdownReceive) stream.guest_reads_no_more = true;
  if (flags & kShutdownSend) stream.guest_sent_all = true;
  // Shut both ways: the guest waits for our RST to finish its close.
  if (stream.guest_reads_no_more && stream.guest_sent_all) stream.closing = true;
  after_flush(stream, key);
}

void VirtioVsock::serve_rx() {
  for (;;) {
    auto chain = next_writable_chain(kRxQueue);
    if (!chain) break;
    if (chain->writable_bytes() < kHeaderSize) {
      fail_guest_misuse(Error(ErrorCode::kGuest, "vsock rx buffer at descriptor " + std::to_string(chain->head()) +
                                                     " holds " + std::to_string(chain->writable_bytes()) +
                                                     " bytes, less than a packet header"));
      break;
    }
    if (!control_.empty()) {
      const Control control = control_.front();
      control_.pop_front();
      send_control(control, *chain);
    } else if (!send_data(*chain)) {
      put_back(kRxQueue, *chain);
      break;
    }
  }
  // Answers went out: the guest's packets may be taken again.
  if (tx_stalled_ && control_.size() < kMaxPendingControl / 2) {
    serve_tx();
    if (!control_.empty()) serve_rx();
  }
}

void VirtioVsock::send_control(const Control& control, const DescriptorChain& chain) {
  if (auto it = streams_.find(control.key); it != streams_.end() && control.op == kOpCreditUpdate)
    it->second.update_queued = false;
  write_packet(chain, control.key, control.op, control.flags, {});
}

bool VirtioVsock::send_data(const DescriptorChain& chain) {
  if (streams_.empty()) return false;
  const uint32_t room = static_cast<uint32_t>(std::min<uint64_t>(chain.writable_bytes() - kHeaderSize, kMaxPayload));
  // Round-robin: start after the stream served last.
  auto it = last_served_ ? streams_.upper_bound(*last_served_) : streams_.begin();
  for (size_t visited = 0; visited < streams_.size(); ++visited, ++it) {
    if (it == streams_.end()) it = streams_.begin();
    Stream& stream = it->second;
    if (stream.state != StreamState::kEstablished || !stream.host_readable || stream.host_eof ||
        stream.guest_reads_no_more || stream.closing)
      continue;
    const uint32_t length = std::min(room, stream.credit.peer_free());
    if (length == 0) continue;  // waits for the guest's CREDIT_UPDATE
    const Key key = it->first;
    scratch_.resize(length);
    const ssize_t n = ::recv(stream.fd.get(), scratch_.data(), length, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      stream.host_readable = false;  // until the next edge
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    last_served_ = key;
    if (n > 0) {
      stream.credit.sent(static_cast<uint32_t>(n));
      write_packet(chain, key, kOpRw, 0, std::span(scratch_).first(static_cast<size_t>(n)));
    } else if (n == 0) {
      // The host program sent its last byte; the guest may still send.
      stream.host_eof = true;
      write_packet(chain, key, kOpShutdown, kShutdownSend, {});
    } else {
      HV_LOG_DEBUG("vsock: host socket of port {}: {}", key.host_port, std::strerror(errno));
      drop_stream(key);
      write_packet(chain, key, kOpRst, 0, {});
    }
    return true;
  }
  return false;
}

void VirtioVsock::serve_events() {
  if (!reset_event_due_) return;
  auto chain = next_writable_chain(kEventQueue);
  if (!chain) return;
  const uint32_t id = kEventTransportReset;
  auto written = chain->write(memory(), 0, std::span(reinterpret_cast<const uint8_t*>(&id), sizeof id));
  if (!written || *written != sizeof id) {
    fail_guest_misuse(written ? Error(ErrorCode::kGuest, "vsock event buffer shorter than an event") : written.error());
    return;
  }
  // Where the driver's next event buffer goes, read before the driver can
  // see the event: a buffer there is one it posted after taking the event,
  // and Linux posts it after it has reset its sockets. Ask to be notified of
  // it (the driver may have more buffers posted, which would otherwise
  // suppress that notification under EVENT_IDX).
  const auto avail = driver_avail_idx(kEventQueue);
  reset_event_due_ = false;
  if (!complete(kEventQueue, *chain, sizeof id)) return release_held_connects();
  if (!avail) {
    HV_LOG_WARN("vsock: cannot read the event queue's index; host connections are no longer held for the reset");
    return release_held_connects();
  }
  reset_ack_avail_ = *avail;
  request_notify_at(kEventQueue, *avail);
}

void VirtioVsock::queue_transport_reset() {
  reset_event_due_ = true;
  reset_ack_avail_.reset();
  hold_abandoned_ = false;
}

void VirtioVsock::check_reset_done() {
  if (!reset_ack_avail_) return;
  const auto avail = driver_avail_idx(kEventQueue);
  if (!avail || *avail == *reset_ack_avail_) return;
  reset_ack_avail_.reset();
  if (reset_event_due_) return;  // another reset is queued: hold on for that one
  release_held_connects();
  serve_rx();
}

void VirtioVsock::release_held_connects() {
  size_t released = 0;
  while (!held_connects_.empty()) {
    const Key key = held_connects_.front();
    held_connects_.pop_front();
    auto it = streams_.find(key);
    if (it == streams_.end() || it->second.state != StreamState::kHeld) continue;
    it->second.state = StreamState::kConnecting;
    queue_control(key, kOpRequest);
    ++released;
  }
  if (released) HV_LOG_DEBUG("vsock: {} host connection(s) held for the transport reset go to the guest now", released);
}

void VirtioVsock::write_packet(const DescriptorChain& chain, const Key& key, uint16_t op, uint32_t flags,
                               std::span<const uint8_t> payload) {
  Header header{};
  header.src_cid = kHostCid;
  header.dst_cid = guest_cid_;
  header.src_port = key.host_port;
  header.dst_port = key.guest_port;
  header.len = static_cast<uint32_t>(payload.size());
  header.type = kTypeStream;
  header.op = op;
  header.flags = flags;
  header.buf_alloc = kBufferAlloc;
  if (auto it = streams_.find(key); it != streams_.end()) {
    header.fwd_cnt = it->second.credit.fwd_cnt();
    it->second.credit.announced();
  }
  auto wrote = chain.write(memory(), 0, std::span(reinterpret_cast<const uint8_t*>(&header), kHeaderSize));
  if (wrote && !payload.empty()) wrote = chain.write(memory(), kHeaderSize, payload);
  if (!wrote) return fail_guest_misuse(wrote.error());
  complete(kRxQueue, chain, kHeaderSize + payload.size());
}

// ------------------------------------------------------------------ host side

void VirtioVsock::process_host() {
  run_turn([this] {
    if (reset_ack_avail_) check_reset_done();
    epoll_event events[64];
    int n;
    do {
      n = ::epoll_wait(epoll_.get(), events, 64, 0);
      for (int i = 0; i < n; ++i) {
        auto it = watched_.find(events[i].data.fd);
        if (it == watched_.end()) continue;  // closed earlier in this batch
        const Watched what = it->second;
        switch (what.kind) {
          case Watched::kListener: accept_host_connections(); break;
          case Watched::kConnectLine: read_connect_line(events[i].data.fd); break;
          case Watched::kStream: stream_event(what.key, events[i].events); break;
          case Watched::kConnectTimer: expire_connects(); break;
        }
      }
    } while (n == 64);
    serve_rx();
  });
}

void VirtioVsock::accept_host_connections() {
  for (;;) {
    if (streams_.size() + connect_lines_.size() >= kMaxStreams) {
      accept_stalled_ = true;  // taken when a stream closes
      return;
    }
    const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        HV_LOG_WARN("vsock: accept on {}: {}", options_.uds_path, std::strerror(errno));
      accept_stalled_ = false;
      return;
    }
    UniqueFd owned(fd);
    if (!watch(fd, Watched{Watched::kConnectLine}, EPOLLIN | EPOLLRDHUP | EPOLLET)) continue;
    connect_lines_.emplace(fd, std::move(owned));
  }
}

void VirtioVsock::read_connect_line(int fd) {
  char buffer[vsock::kMaxConnectLine];
  const ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) return close_connect_line(fd);
  auto line = vsock::parse_connect_line(std::string_view(buffer, static_cast<size_t>(n)));
  if (!line) {
    HV_LOG_WARN_LIMITED("{} (from a host program on {})", line.error().message(), options_.uds_path);
    return close_connect_line(fd);
  }
  if (!line->has_value()) return;  // the rest of the line is still coming
  // Take the line off the socket; what follows it is the stream's.
  if (::recv(fd, buffer, (*line)->length, MSG_DONTWAIT) != static_cast<ssize_t>((*line)->length))
    return close_connect_line(fd);
  if (!running()) {
    HV_LOG_DEBUG("vsock: CONNECT {} while the guest's driver is not running; closed", (*line)->port);
    return close_connect_line(fd);
  }
  UniqueFd socket = std::move(connect_lines_.at(fd));
  connect_lines_.erase(fd);
  unwatch(fd);
  const Key key = free_host_key((*line)->port);
  Stream& stream = streams_.emplace(key, Stream(std::move(socket))).first->second;  // kConnecting
  if (!watch(fd, Watched{Watched::kStream, key}, kStreamEvents)) {
    streams_.erase(key);
    return;
  }
  stream.connect_deadline = std::chrono::steady_clock::now() + options_.connect_timeout;
  // Later deadlines come later: an armed timer already fires first.
  if (!connect_timer_armed_) arm_connect_timer(stream.connect_deadline);
  if (holding_connects()) {
    // A REQUEST the guest took before its driver handled the reset event
    // would be reset with the old streams, silently: wait for the driver.
    stream.state = StreamState::kHeld;
    held_connects_.push_back(key);
    return;
  }
  queue_control(key, kOpRequest);
}

void VirtioVsock::expire_connects() {
  uint64_t expirations;
  (void)!::read(connect_timer_.get(), &expirations, sizeof expirations);
  connect_timer_armed_ = false;
  const auto now = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::time_point> next;
  std::vector<Key> expired;
  bool held_expired = false;
  for (const auto& [key, stream] : streams_) {
    if (stream.state != StreamState::kConnecting && stream.state != StreamState::kHeld) continue;
    if (stream.connect_deadline <= now)
      expired.push_back(key);
    else if (!next || stream.connect_deadline < *next)
      next = stream.connect_deadline;
  }
  for (const Key& key : expired) {
    auto it = streams_.find(key);
    if (it == streams_.end()) continue;
    if (it->second.state == StreamState::kHeld) {
      // The guest never heard of it: no RST, just the host program's socket.
      HV_LOG_WARN_LIMITED(
          "vsock: the guest's driver did not finish the transport reset (after a snapshot restore or a CID change) "
          "within {} ms; the connection to its port {} waited for it and is closed",
          options_.connect_timeout.count(), key.guest_port);
      drop_stream(key);
      held_expired = true;
      continue;
    }
    HV_LOG_WARN_LIMITED("vsock: the guest did not answer a connection to its port {} within {} ms; closed",
                        key.guest_port, options_.connect_timeout.count());
    reset_stream(key);
  }
  if (held_expired) {
    // A driver that does not finish the reset must not hold every later
    // connection too: they go to the guest as they come until the next reset.
    hold_abandoned_ = true;
    release_held_connects();
  }
  if (next) arm_connect_timer(*next);
}

void VirtioVsock::arm_connect_timer(std::chrono::steady_clock::time_point deadline) {
  const auto left =
      std::max<std::chrono::nanoseconds>(deadline - std::chrono::steady_clock::now(), std::chrono::nanoseconds(1));
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(left.count() / 1'000'000'000);
  spec.it_value.tv_nsec = static_cast<long>(left.count() % 1'000'000'000);
  connect_timer_armed_ = ::timerfd_settime(connect_timer_.get(), 0, &spec, nullptr) == 0;
}

void VirtioVsock::close_connect_line(int fd) {
  unwatch(fd);
  connect_lines_.erase(fd);
  if (accept_stalled_) accept_host_connections();
}

void VirtioVsock::stream_event(const Key& key, uint32_t events) {
  auto it = streams_.find(key);
  if (it == streams_.end()) return;
  Stream& stream = it->second;
  // A host program that hangs up while its CONNECT is held: the guest never
  // heard of it, so it just goes.
  if (stream.state == StreamState::kHeld && (events & (EPOLLHUP | EPOLLERR))) return drop_stream(key);
  // A hang-up or error shows as a read of 0 or an error, in order after the data.
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) stream.host_readable = true;
  if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && stream.to_host_sent < stream.to_host.size()) {
    if (!flush_to_host(stream)) return reset_stream(key);
    after_flush(stream, key);
  }
}

bool VirtioVsock::flush_to_host(Stream& stream) {
  while (stream.to_host_sent < stream.to_host.size()) {
    const ssize_t n = ::send(stream.fd.get(), stream.to_host.data() + stream.to_host_sent,
                             stream.to_host.size() - stream.to_host_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;  // EPOLLOUT brings us back
      return false;
    }
    stream.to_host_sent += static_cast<size_t>(n);
    stream.credit.forward(static_cast<uint32_t>(n));
  }
  if (stream.to_host_sent == stream.to_host.size()) {
    stream.to_host.clear();
    stream.to_host_sent = 0;
  } else if (stream.to_host_sent >= kBufferAlloc / 2) {
    // Keep the buffer from creeping: what went out is dropped from its front.
    stream.to_host.erase(stream.to_host.begin(), stream.to_host.begin() + static_cast<ptrdiff_t>(stream.to_host_sent));
    stream.to_host_sent = 0;
  }
  return true;
}

void VirtioVsock::after_flush(Stream& stream, const Key& key) {
  if (stream.to_host.empty()) {
    if (stream.closing) return reset_stream(key);
    if (stream.guest_sent_all) ::shutdown(stream.fd.get(), SHUT_WR);
  }
  if (!stream.closing && stream.credit.update_due() && !stream.update_queued) {
    stream.update_queued = true;
    queue_control(key, kOpCreditUpdate);
  }
}

Result<void> VirtioVsock::watch(int fd, Watched what, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return Error::from_errno("vsock: watching a socket");
  watched_[fd] = what;
  return ok();
}

void VirtioVsock::unwatch(int fd) {
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  watched_.erase(fd);
}

// ------------------------------------------------------------------ streams

void VirtioVsock::queue_control(const Key& key, uint16_t op, uint32_t flags) {
  control_.push_back(Control{key, op, flags});
}

void VirtioVsock::reset_stream(const Key& key) {
  drop_stream(key);
  queue_control(key, kOpRst);
}

void VirtioVsock::answer_rst(const Header& header) { queue_control(Key{header.dst_port, header.src_port}, kOpRst); }

void VirtioVsock::drop_stream(const Key& key) {
  auto it = streams_.find(key);
  if (it == streams_.end()) return;
  if (it->second.state == StreamState::kHeld) std::erase(held_connects_, key);
  unwatch(it->second.fd.get());
  streams_.erase(it);
  if (accept_stalled_) accept_host_connections();
}

void VirtioVsock::drop_all_streams() {
  for (auto& [key, stream] : streams_) unwatch(stream.fd.get());
  streams_.clear();
  held_connects_.clear();
  control_.clear();
  last_served_.reset();
  if (accept_stalled_) accept_host_connections();
}

VirtioVsock::Key VirtioVsock::free_host_key(uint32_t guest_port) {
  for (;;) {
    const Key key{next_host_port_, guest_port};
    next_host_port_ = next_host_port_ == UINT32_MAX ? kFirstHostPort : next_host_port_ + 1;
    if (!streams_.contains(key)) return key;
  }
}

}  // namespace hostvisor
