// virtio console device (virtio 1.2, 5.3). Port 0 is the console: receiveq0
// (queue 0) carries host input to the guest, transmitq0 (queue 1) carries
// guest output to the host. Linux shows it as /dev/hvc0. SIZE is offered so
// the guest's tty follows the host terminal's size (set_size(); 80x24 until
// told), and EMERG_WRITE so early kernel output written to the configuration
// space reaches the host too.
//
// Named ports (a guest agent's org.qemu.guest_agent.0) come with MULTIPORT
// (5.3.6): a control queue pair over which the device announces each port
// (PORT_ADD, then CONSOLE_PORT or PORT_NAME once the driver set it up, and
// PORT_OPEN for the host end), and a queue pair per further port. Linux shows
// them as /dev/vportNpM with /sys/class/virtio-ports/*/name. MULTIPORT is
// offered only when the device has named ports, so a machine without any
// keeps the plain single-port console it always had.
//
// The host side of a port is an output sink that receives the guest's bytes
// in order, and enqueue_input() that queues host bytes (a bounded buffer per
// port) and delivers them as soon as the driver has posted receive buffers
// (and, for a named port, has it open: Linux drops data for a closed port).
// Output the sink cannot take is dropped and counted (output_dropped()); the
// device goes on.
//
// Control messages from the driver are guest input: a message for a port
// that does not exist, too short, or with an event the driver does not send
// is refused (counted in control_refused()), never trusted. The messages the
// device has for the driver wait in a bounded queue.
//
// Thread-safe: the host-side calls may come from any thread, concurrently
// with the transport's process_queue(). Sinks and the open callback run with
// the device lock held: they must not call back into the device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "devices/virtio/console/virtio_console_spec.h"
#include "devices/virtio/virtio_device_core.h"

namespace hostvisor {

class VirtioConsole : public VirtioDeviceCore {
 public:
  // Takes guest output; false if the host could not take it.
  using OutputSink = std::function<bool(std::span<const uint8_t>)>;
  // Takes guest output and never refuses it (a terminal written with write_all).
  using InfallibleSink = std::function<void(std::span<const uint8_t>)>;
  static constexpr uint16_t kQueueSize = 256;
  static constexpr size_t kDefaultInputCapacity = 64 * 1024;
  // Named ports a device can have: each costs two queues, and Linux caps a
  // device's queues (and ports) far above what anyone names.
  static constexpr size_t kMaxNamedPorts = 30;
  // A port name is one sysfs line in the guest; longer names are refused.
  static constexpr size_t kMaxPortNameLength = 128;
  // Control messages waiting for the driver's receive buffers. A driver that
  // posts none while provoking replies loses the excess (counted), not host memory.
  static constexpr size_t kMaxPendingControl = 256;

  struct NamedPort {
    std::string name;  // e.g. "org.qemu.guest_agent.0"
    OutputSink sink;   // the guest's bytes
    // The guest opened (true) or closed (false) its end.
    std::function<void(bool)> on_guest_open;
    size_t input_capacity = kDefaultInputCapacity;
  };

  // `sink` receives port 0's (the console's) output; `input_capacity` bounds
  // the bytes waiting for the guest. `named_ports` become ports 1, 2, ... in
  // order. Fails if a name is empty or too long, there are too many ports,
  // or an eventfd cannot be created.
  static Result<std::shared_ptr<VirtioConsole>> create(OutputSink sink, size_t input_capacity = kDefaultInputCapacity,
                                                       std::vector<NamedPort> named_ports = {});
  static Result<std::shared_ptr<VirtioConsole>> create(InfallibleSink sink,
                                                       size_t input_capacity = kDefaultInputCapacity,
                                                       std::vector<NamedPort> named_ports = {});

  // Queues host input for port `port` (0: the console) and delivers what the
  // posted receive buffers can take. Returns how many bytes were accepted:
  // fewer than bytes.size() when the buffer is full (the caller keeps the
  // rest and retries when input_space_fd(port) becomes readable; nothing is
  // dropped silently). Nothing is accepted for a port that does not exist.
  size_t enqueue_input(std::span<const uint8_t> bytes) { return enqueue_input(0, bytes); }
  size_t enqueue_input(uint32_t port, std::span<const uint8_t> bytes);
  // Bytes accepted but not yet handed to the guest.
  size_t input_pending(uint32_t port = 0) const;
  // Room left in the port's input buffer.
  size_t input_room(uint32_t port) const;
  // Readable (an eventfd; read it to clear) when input space was freed after
  // enqueue_input() refused bytes for lack of room.
  int input_space_fd(uint32_t port = 0) const;

  // The host end of named port `port` was opened (a client connected) or
  // closed: the guest is told (PORT_OPEN), and Linux lets the guest write
  // only while it is open. Closing it discards input still waiting.
  void set_host_open(uint32_t port, bool open);
  bool host_open(uint32_t port) const;
  // The guest has named port `port` open.
  bool guest_open(uint32_t port) const;
  // Ports in all, the console included.
  uint32_t port_count() const { return static_cast<uint32_t>(ports_.size()); }
  bool multiport() const { return ports_.size() > 1; }

  // The host terminal's size: the guest sees it in the configuration space
  // (or a RESIZE message with MULTIPORT) and is told of a change (and of a
  // size set before the driver was ready, as soon as it is).
  void set_size(uint16_t cols, uint16_t rows);

  // Transmit chains (and emergency writes) whose output a sink refused.
  uint64_t output_dropped() const;
  // Control messages from the driver that were refused, and ones for the
  // driver dropped because it posted no buffers for them.
  uint64_t control_refused() const;
  uint64_t control_dropped() const;

  // Input not yet handed to the guest, the terminal size, and with named
  // ports each port's state and the control messages not yet delivered.
  static constexpr uint32_t kStateVersion = 2;  // 1: port 0 only
  uint32_t state_version() const override { return kStateVersion; }
  void save_state(StateWriter& out) const override;
  Result<void> restore_state(StateReader& in, uint32_t version) override;

  std::string_view name() const override { return "console"; }
  uint32_t device_type() const override;
  uint64_t device_features() const override;
  uint32_t config_size() const override { return sizeof(virtio_console::Config); }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  struct Port {
    std::string name;  // empty for the console
    OutputSink sink;
    std::function<void(bool)> on_guest_open;
    size_t capacity = 0;
    EventFd space_event;
    // Kept across a reset, for the next driver (a rebooting guest's console).
    std::deque<uint8_t> input;
    bool input_refused = false;  // enqueue_input turned bytes away since the last space signal
    bool host_open = false;      // named ports: a host client is there (the console always is)
    // Per driver (cleared on reset).
    bool ready = false;       // MULTIPORT: the driver answered PORT_READY 1
    bool guest_open = false;  // the driver said PORT_OPEN 1
  };

  explicit VirtioConsole(std::vector<Port> ports);
  bool negotiated_multiport() const;
  Result<void> on_activate() override;
  void on_reset() override;
  void serve_queue(uint16_t queue) override;
  // Port `port`'s input may go to the guest now.
  bool delivers(const Port& port, uint32_t id) const;
  // Fills posted receive buffers of port `id` from its input.
  void deliver_input(uint32_t id);
  void transmit(uint32_t id);
  void output(Port& port, std::span<const uint8_t> bytes, bool& dropped);
  // The control queues (MULTIPORT).
  void receive_control();
  void handle_control(const virtio_console::ControlMessage& message);
  void announce_port(uint32_t id);
  void send_control(uint32_t id, uint16_t event, uint16_t value, std::span<const uint8_t> extra = {});
  void deliver_control();

  // --- guarded by the core's mutex_ (ports_ itself never changes size)
  std::vector<Port> ports_;
  uint64_t output_dropped_ = 0;
  uint64_t control_refused_ = 0;
  uint64_t control_dropped_ = 0;
  std::deque<std::vector<uint8_t>> control_out_;  // messages for the driver, in order
  uint16_t cols_ = 80, rows_ = 24;
  bool size_set_ = false;  // set_size() was called: announce the size on activation
};

}  // namespace hostvisor
