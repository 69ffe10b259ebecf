// Numbers and layouts of the virtio console device from the virtio 1.2
// specification (OASIS), section 5.3.
#pragma once

#include <cstdint>

namespace hostvisor::virtio_console {

// 5.3.3 feature bits.
inline constexpr unsigned kFeatureSize = 0;
inline constexpr unsigned kFeatureMultiport = 1;
inline constexpr unsigned kFeatureEmergencyWrite = 2;
// 5.3.4 struct virtio_console_config.
struct __attribute__((packed)) Config {
  uint16_t cols;
  uint16_t rows;
  uint32_t max_nr_ports;
  uint32_t emerg_wr;
};
static_assert(sizeof(Config) == 12);

// 5.3.2 virtqueues: port 0's pair, then (with MULTIPORT) the control pair,
// then a pair for each further port.
inline constexpr uint16_t kReceiveQueue = 0;
inline constexpr uint16_t kTransmitQueue = 1;
inline constexpr uint16_t kControlReceiveQueue = 2;   // device -> driver messages
inline constexpr uint16_t kControlTransmitQueue = 3;  // driver -> device messages
inline constexpr uint16_t receive_queue_of(uint32_t port) {
  return port == 0 ? kReceiveQueue : static_cast<uint16_t>(2 + 2 * port);
}
inline constexpr uint16_t transmit_queue_of(uint32_t port) { return receive_queue_of(port) + 1; }

// 5.3.6.2 struct virtio_console_control, the head of every control message.
struct __attribute__((packed)) ControlMessage {
  uint32_t id;  // port number
  uint16_t event;
  uint16_t value;
};
static_assert(sizeof(ControlMessage) == 8);

// 5.3.6.2 control events.
inline constexpr uint16_t kDeviceReady = 0;   // driver: ready (value 1) or failed
inline constexpr uint16_t kDeviceAdd = 1;     // device: port `id` exists
inline constexpr uint16_t kDeviceRemove = 2;  // device: port `id` is gone
inline constexpr uint16_t kPortReady = 3;     // driver: port `id` set up (value 1) or failed
inline constexpr uint16_t kConsolePort = 4;   // device: port `id` is a console
inline constexpr uint16_t kResize = 5;        // device: console size follows (cols, rows)
inline constexpr uint16_t kPortOpen = 6;      // either side: opened (1) or closed (0) its end
inline constexpr uint16_t kPortName = 7;      // device: the port's name follows

// 5.3.6.2.1 the size that follows a VIRTIO_CONSOLE_RESIZE message, in the
// spec's order. Linux read it as rows, cols until commit 5326ab737a47 made it
// follow the spec: an older guest sees the two swapped (only with MULTIPORT,
// i.e. --qga, and a host-set size).
struct __attribute__((packed)) ResizeMessage {
  uint16_t cols;
  uint16_t rows;
};

}  // namespace hostvisor::virtio_console
