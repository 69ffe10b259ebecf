#include "devices/virtio/console/virtio_console.h"

#include <sys/eventfd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <vector>

#include "base/log.h"
#include "base/log_rate_limit.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

using namespace virtio_console;

namespace {
uint16_t queue_count_for(size_t ports) { return ports > 1 ? static_cast<uint16_t>(2 + 2 * ports) : 2; }
}  // namespace

VirtioConsole::VirtioConsole(std::vector<Port> ports)
    : VirtioDeviceCore(queue_count_for(ports.size()), kQueueSize), ports_(std::move(ports)) {}

Result<std::shared_ptr<VirtioConsole>> VirtioConsole::create(OutputSink sink, size_t input_capacity,
                                                             std::vector<NamedPort> named_ports) {
  if (named_ports.size() > kMaxNamedPorts)
    return Error(ErrorCode::kInvalidArgument, "virtio console: " + std::to_string(named_ports.size()) +
                                                  " named ports, at most " + std::to_string(kMaxNamedPorts));
  std::vector<Port> ports;
  auto add_port = [&ports](OutputSink port_sink, size_t capacity) -> Result<Port*> {
    EventFd space = HV_TRY(EventFd::create(0, EFD_NONBLOCK | EFD_CLOEXEC));
    ports.push_back(Port{.sink = std::move(port_sink), .capacity = std::max<size_t>(capacity, 1),
                         .space_event = std::move(space)});
    return &ports.back();
  };
  HV_TRY(add_port(std::move(sink), input_capacity))->host_open = true;  // the terminal is always there
  for (NamedPort& named : named_ports) {
    if (named.name.empty() || named.name.size() > kMaxPortNameLength)
      return Error(ErrorCode::kInvalidArgument, "virtio console: a port name must be 1 to " +
                                                    std::to_string(kMaxPortNameLength) + " bytes long");
    Port* port = HV_TRY(add_port(std::move(named.sink), named.input_capacity));
    port->name = std::move(named.name);
    port->on_guest_open = std::move(named.on_guest_open);
  }
  return std::shared_ptr<VirtioConsole>(new VirtioConsole(std::move(ports)));
}

Result<std::shared_ptr<VirtioConsole>> VirtioConsole::create(InfallibleSink sink, size_t input_capacity,
                                                             std::vector<NamedPort> named_ports) {
  OutputSink always_taken;
  if (sink) {
    always_taken = [sink = std::move(sink)](std::span<const uint8_t> bytes) {
      sink(bytes);
      return true;
    };
  }
  return create(std::move(always_taken), input_capacity, std::move(named_ports));
}

uint32_t VirtioConsole::device_type() const { return virtio::kDeviceConsole; }

uint64_t VirtioConsole::device_features() const {
  uint64_t features = virtio::feature_bit(virtio::kFeatureIndirectDesc) | virtio::feature_bit(virtio::kFeatureEventIdx) |
                      virtio::feature_bit(kFeatureSize) | virtio::feature_bit(kFeatureEmergencyWrite);
  if (multiport()) features |= virtio::feature_bit(kFeatureMultiport);
  return features;
}

bool VirtioConsole::negotiated_multiport() const {
  return running() && (features() & virtio::feature_bit(kFeatureMultiport)) != 0;
}

void VirtioConsole::read_config(uint64_t offset, std::span<uint8_t> data) {
  Config c{};
  {
    std::lock_guard lock(mutex_);
    c.cols = cols_;
    c.rows = rows_;
  }
  // max_nr_ports is only valid with MULTIPORT (offered only with named
  // ports); emerg_wr reads as zero.
  if (multiport()) c.max_nr_ports = port_count();
  read_config_bytes(c, offset, data);
}

void VirtioConsole::set_size(uint16_t cols, uint16_t rows) {
  run_turn([&] {
    size_set_ = true;
    if (cols == cols_ && rows == rows_) return;
    cols_ = cols;
    rows_ = rows;
    if (negotiated_multiport()) {
      // With MULTIPORT Linux takes a console's size from RESIZE messages only.
      if (ports_[0].ready) {
        const ResizeMessage size{cols_, rows_};
        send_control(0, kResize, 0, std::span(reinterpret_cast<const uint8_t*>(&size), sizeof size));
        deliver_control();
      }
    } else {
      signal_config_change();
    }
  });
}

uint64_t VirtioConsole::output_dropped() const {
  std::lock_guard lock(mutex_);
  return output_dropped_;
}

uint64_t VirtioConsole::control_refused() const {
  std::lock_guard lock(mutex_);
  return control_refused_;
}

uint64_t VirtioConsole::control_dropped() const {
  std::lock_guard lock(mutex_);
  return control_dropped_;
}

void VirtioConsole::write_config(uint64_t offset, std::span<const uint8_t> data) {
  // 5.3.6.1: a write to emerg_wr outputs its low byte, even before DRIVER_OK.
  if (offset != offsetof(Config, emerg_wr) || data.empty()) return;
  std::lock_guard lock(mutex_);
  bool dropped = false;
  output(ports_[0], data.first(1), dropped);
  if (dropped) ++output_dropped_;
}

Result<void> VirtioConsole::on_activate() {
  // Input typed before the driver was ready waits for its first receive buffers.
  deliver_input(0);
  // Linux reads cols/rows only when told of a change: a size the host set
  // before the driver came up is announced now, or the guest would keep 0x0.
  // (With MULTIPORT it comes as a RESIZE once the console port is ready.)
  if (size_set_ && !negotiated_multiport()) signal_config_change();
  if (negotiated_multiport()) {
    // A restored driver's buffers are already posted: what waits goes now.
    deliver_control();
    for (uint32_t id = 1; id < ports_.size(); ++id) deliver_input(id);
  }
  return ok();
}

void VirtioConsole::on_reset() {
  // The next driver sets its ports up anew; what it had not read of the
  // control messages was meant for the old one.
  control_out_.clear();
  for (size_t id = 0; id < ports_.size(); ++id) {
    Port& port = ports_[id];
    port.ready = false;
    if (port.guest_open && port.on_guest_open) port.on_guest_open(false);
    port.guest_open = false;
  }
}

size_t VirtioConsole::enqueue_input(uint32_t id, std::span<const uint8_t> bytes) {
  if (id >= ports_.size()) return 0;
  size_t take = 0;
  run_turn([&] {
    Port& port = ports_[id];
    const size_t room = port.capacity - port.input.size();
    take = std::min(room, bytes.size());
    port.input.insert(port.input.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(take));
    if (take < bytes.size()) port.input_refused = true;
    deliver_input(id);
  });
  return take;
}

size_t VirtioConsole::input_pending(uint32_t id) const {
  if (id >= ports_.size()) return 0;
  std::lock_guard lock(mutex_);
  return ports_[id].input.size();
}

size_t VirtioConsole::input_room(uint32_t id) const {
  if (id >= ports_.size()) return 0;
  std::lock_guard lock(mutex_);
  return ports_[id].capacity - ports_[id].input.size();
}

int VirtioConsole::input_space_fd(uint32_t id) const {
  return id < ports_.size() ? ports_[id].space_event.fd() : -1;
}

void VirtioConsole::set_host_open(uint32_t id, bool open) {
  if (id == 0 || id >= ports_.size()) return;
  run_turn([&] {
    Port& port = ports_[id];
    if (port.host_open == open) return;
    port.host_open = open;
    // What the last client sent and the guest has not read yet is not for the next one.
    if (!open && !port.input.empty()) {
      port.input.clear();
      if (port.input_refused) {
        port.input_refused = false;
        port.space_event.signal();
      }
    }
    if (negotiated_multiport() && port.ready) {
      send_control(id, kPortOpen, open ? 1 : 0);
      deliver_control();
    }
  });
}

bool VirtioConsole::host_open(uint32_t id) const {
  if (id >= ports_.size()) return false;
  std::lock_guard lock(mutex_);
  return ports_[id].host_open;
}

bool VirtioConsole::guest_open(uint32_t id) const {
  if (id >= ports_.size()) return false;
  std::lock_guard lock(mutex_);
  return ports_[id].guest_open;
}

void VirtioConsole::serve_queue(uint16_t queue) {
  if (queue == kReceiveQueue) return deliver_input(0);  // the driver posted receive buffers
  if (queue == kTransmitQueue) return transmit(0);
  if (!negotiated_multiport()) return;
  if (queue == kControlReceiveQueue) return deliver_control();
  if (queue == kControlTransmitQueue) return receive_control();
  const uint32_t id = (queue - 2u) / 2u;
  if (id == 0 || id >= ports_.size()) return;
  if (queue == receive_queue_of(id)) deliver_input(id);
  else transmit(id);
}

bool VirtioConsole::delivers(const Port& port, uint32_t id) const {
  if (!negotiated_multiport()) return id == 0;
  // Linux fills a port's receive queue once it added the port, and drops
  // what arrives for a closed one (a console is always open).
  return port.ready && (id == 0 || port.guest_open);
}

void VirtioConsole::deliver_input(uint32_t id) {
  Port& port = ports_[id];
  if (!running() || !delivers(port, id)) return;
  const uint16_t queue = receive_queue_of(id);
  std::vector<uint8_t> chunk;
  bool delivered = false;
  while (!port.input.empty()) {
    auto chain = next_writable_chain(queue);
    if (!chain) break;  // no buffers (the rest waits for the driver), a later turn, or a broken one
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chain->writable_bytes(), port.input.size()));
    chunk.assign(port.input.begin(), port.input.begin() + static_cast<ptrdiff_t>(n));
    auto wrote = chain->write(memory(), 0, chunk);
    if (!wrote) {
      fail_guest_misuse(wrote.error());
      break;
    }
    if (!complete(queue, *chain, n)) break;
    port.input.erase(port.input.begin(), port.input.begin() + static_cast<ptrdiff_t>(n));
    delivered = true;
  }
  if (delivered && port.input_refused && port.input.size() < port.capacity) {
    port.input_refused = false;
    port.space_event.signal();
  }
}

void VirtioConsole::output(Port& port, std::span<const uint8_t> bytes, bool& dropped) {
  if (dropped || !port.sink) return;
  if (!port.sink(bytes)) dropped = true;
}

void VirtioConsole::transmit(uint32_t id) {
  Port& port = ports_[id];
  const uint16_t queue = transmit_queue_of(id);
  std::array<uint8_t, 4096> chunk;  // on the stack: no allocation per notification
  while (auto chain = next_chain(queue)) {
    // The readable bytes are the output; device-writable buffers carry nothing here.
    // A named port's output with no host end to take it is lost (Linux
    // blocks writers until PORT_OPEN, so only a misbehaving guest sends it).
    bool dropped = !port.host_open;
    for (uint64_t at = 0; !dropped && at < chain->readable_bytes();) {
      auto got = chain->read(memory(), at, chunk);
      if (!got || *got == 0) break;
      output(port, std::span<const uint8_t>(chunk.data(), *got), dropped);
      at += *got;
    }
    if (dropped) ++output_dropped_;
    if (!complete(queue, *chain, 0)) break;
  }
}

void VirtioConsole::receive_control() {
  while (auto chain = next_chain(kControlTransmitQueue)) {
    // Only the 8-byte header means anything from the driver; the rest of a
    // longer chain is ignored, a shorter one is refused.
    ControlMessage message{};
    auto got = chain->read(memory(), 0, std::span(reinterpret_cast<uint8_t*>(&message), sizeof message));
    const bool whole = got && *got == sizeof message;
    if (!complete(kControlTransmitQueue, *chain, 0)) break;
    if (!whole) {
      ++control_refused_;
      continue;
    }
    handle_control(message);
  }
  deliver_control();
}

void VirtioConsole::handle_control(const ControlMessage& message) {
  auto refuse = [&](const char* why) {
    // Counted, and logged rate-limited: a hostile driver must not flood the log.
    ++control_refused_;
    HV_LOG_WARN_LIMITED("virtio console: refused a control message (port {}, event {}): {}", message.id, message.event,
                        why);
  };
  switch (message.event) {
    case kDeviceReady:
      if (message.value != 1) return;  // the driver failed; it will reset us
      for (uint32_t id = 0; id < ports_.size(); ++id) send_control(id, kDeviceAdd, 0);
      return;
    case kPortReady: {
      if (message.id >= ports_.size()) return refuse("no such port");
      Port& port = ports_[message.id];
      if (message.value != 1 || port.ready) return;  // the driver failed to add it, or said so twice
      port.ready = true;
      announce_port(message.id);
      deliver_input(message.id);
      return;
    }
    case kPortOpen: {
      if (message.id >= ports_.size()) return refuse("no such port");
      Port& port = ports_[message.id];
      if (!port.ready) return refuse("the port is not set up");
      const bool open = message.value != 0;
      if (port.guest_open == open) return;
      port.guest_open = open;
      if (port.on_guest_open) port.on_guest_open(open);
      if (open) deliver_input(message.id);
      return;
    }
    default:
      return refuse("not an event a driver sends");
  }
}

void VirtioConsole::announce_port(uint32_t id) {
  Port& port = ports_[id];
  if (id == 0) {
    send_control(0, kConsolePort, 1);
    if (size_set_) {
      const ResizeMessage size{cols_, rows_};
      send_control(0, kResize, 0, std::span(reinterpret_cast<const uint8_t*>(&size), sizeof size));
    }
  } else {
    send_control(id, kPortName, 0, std::span(reinterpret_cast<const uint8_t*>(port.name.data()), port.name.size()));
  }
  if (port.host_open) send_control(id, kPortOpen, 1);
}

void VirtioConsole::send_control(uint32_t id, uint16_t event, uint16_t value, std::span<const uint8_t> extra) {
  if (control_out_.size() >= kMaxPendingControl) {
    ++control_dropped_;
    return;
  }
  const ControlMessage message{id, event, value};
  std::vector<uint8_t> bytes(sizeof message + extra.size());
  std::memcpy(bytes.data(), &message, sizeof message);
  if (!extra.empty()) std::memcpy(bytes.data() + sizeof message, extra.data(), extra.size());
  control_out_.push_back(std::move(bytes));
}

void VirtioConsole::deliver_control() {
  while (!control_out_.empty() && serving(kControlReceiveQueue)) {
    auto chain = next_writable_chain(kControlReceiveQueue);
    if (!chain) break;
    const std::vector<uint8_t>& message = control_out_.front();
    // A buffer too small for a whole message is the driver's mistake: it gets what fits.
    auto wrote = chain->write(memory(), 0, message);
    if (!wrote) {
      fail_guest_misuse(wrote.error());
      break;
    }
    if (!complete(kControlReceiveQueue, *chain, *wrote)) break;
    control_out_.pop_front();
  }
}

void VirtioConsole::save_state(StateWriter& out) const {
  std::lock_guard lock(mutex_);
  const Port& console = ports_[0];
  out.put(static_cast<uint32_t>(console.input.size()));
  for (uint8_t byte : console.input) out.put(byte);
  out.put(cols_);
  out.put(rows_);
  out.put_bool(size_set_);
  // Version 2: the ports' driver-side state, their input and the control
  // messages in flight. The host ends are not saved: a restored machine's
  // clients connect afresh.
  out.put(static_cast<uint32_t>(ports_.size()));
  for (size_t id = 0; id < ports_.size(); ++id) {
    const Port& port = ports_[id];
    out.put_bool(port.ready);
    out.put_bool(port.guest_open);
    if (id == 0) continue;
    out.put_bool(port.host_open);
    out.put(static_cast<uint32_t>(port.input.size()));
    for (uint8_t byte : port.input) out.put(byte);
  }
  out.put(static_cast<uint32_t>(control_out_.size()));
  for (const auto& message : control_out_) out.put_bytes(message);
}

Result<void> VirtioConsole::restore_state(StateReader& in, uint32_t version) {
  if (version == 0 || version > kStateVersion)
    return Error(ErrorCode::kUnsupported, "virtio console state version " + std::to_string(version));
  auto get_input = [&in](size_t capacity) {
    const uint32_t pending = in.get<uint32_t>();
    if (pending > capacity) in.fail(std::to_string(pending) + " bytes of pending input, more than the buffer holds");
    std::deque<uint8_t> input;
    for (uint32_t i = 0; i < pending && in.ok(); ++i) input.push_back(in.get<uint8_t>());
    return input;
  };
  std::deque<uint8_t> console_input = get_input(ports_[0].capacity);
  const uint16_t cols = in.get<uint16_t>(), rows = in.get<uint16_t>();
  const bool size_set = in.get_bool();
  struct Saved {
    bool ready = false, guest_open = false, host_open = false;
    std::deque<uint8_t> input;
  };
  std::vector<Saved> saved(ports_.size());
  std::deque<std::vector<uint8_t>> control;
  if (version >= 2) {
    const uint32_t count = in.get<uint32_t>();
    if (in.ok() && count != ports_.size())
      return Error(ErrorCode::kInvalidArgument,
                   "the snapshot's virtio console has " + std::to_string(count) + " ports, this machine's " +
                       std::to_string(ports_.size()) + " (give the same --qga as when it was taken)");
    for (uint32_t id = 0; id < count && in.ok(); ++id) {
      saved[id].ready = in.get_bool();
      saved[id].guest_open = in.get_bool();
      if (id == 0) continue;
      saved[id].host_open = in.get_bool();
      saved[id].input = get_input(ports_[id].capacity);
    }
    const uint32_t messages = in.get<uint32_t>();
    if (messages > kMaxPendingControl) in.fail(std::to_string(messages) + " pending control messages");
    for (uint32_t i = 0; i < messages && in.ok(); ++i)
      control.push_back(in.get_bytes(sizeof(ControlMessage) + kMaxPortNameLength));
  } else if (multiport()) {
    return Error(ErrorCode::kInvalidArgument,
                 "the snapshot's virtio console has no named ports: restore it without --qga");
  }
  HV_TRY(in.finish());
  std::lock_guard lock(mutex_);
  ports_[0].input = std::move(console_input);
  cols_ = cols;
  rows_ = rows;
  size_set_ = size_set;
  control_out_ = std::move(control);
  for (uint32_t id = 0; id < ports_.size(); ++id) {
    Port& port = ports_[id];
    port.ready = saved[id].ready;
    port.guest_open = saved[id].guest_open;
    if (id == 0) continue;
    port.input = std::move(saved[id].input);
    // The host end is this process's: the guest is told where it differs
    // from what it saw at the snapshot (a client then, none yet now).
    if (port.ready && saved[id].host_open != port.host_open) send_control(id, kPortOpen, port.host_open ? 1 : 0);
  }
  return ok();
}

}  // namespace hostvisor
