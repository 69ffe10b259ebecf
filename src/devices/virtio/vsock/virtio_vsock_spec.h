// Numbers and layouts from the virtio 1.2 specification, 5.10 Socket Device:
// the packet header every packet on the rx and tx queues starts with, its
// ops, the shutdown flags, the event on the event queue and the
// configuration space. All fields are little-endian (the host is x86-64).
#pragma once

#include <cstdint>

namespace hostvisor::virtio_vsock {

inline constexpr uint32_t kDeviceType = 19;

// 5.10.2 Virtqueues
inline constexpr uint16_t kRxQueue = 0;
inline constexpr uint16_t kTxQueue = 1;
inline constexpr uint16_t kEventQueue = 2;
inline constexpr uint16_t kQueueCount = 3;

// 5.10.3 Feature bits
inline constexpr unsigned kFeatureStream = 0;

// 5.10.4 Device configuration layout
struct Config {
  uint64_t guest_cid;
};
static_assert(sizeof(Config) == 8);

// Well-known CIDs (5.10.4): the host is always 2; 0, 1 and 0xffffffff are
// reserved, and the upper 32 bits of guest_cid must be zero.
inline constexpr uint64_t kHostCid = 2;
inline constexpr uint64_t kMinGuestCid = 3;
inline constexpr uint64_t kMaxGuestCid = 0xfffffffe;

// 5.10.6 Device Operation: struct virtio_vsock_hdr.
struct [[gnu::packed]] Header {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;
  uint32_t fwd_cnt;
};
static_assert(sizeof(Header) == 44);

inline constexpr uint16_t kTypeStream = 1;

enum Op : uint16_t {
  kOpInvalid = 0,
  kOpRequest = 1,
  kOpResponse = 2,
  kOpRst = 3,
  kOpShutdown = 4,
  kOpRw = 5,
  kOpCreditUpdate = 6,
  kOpCreditRequest = 7,
};

// SHUTDOWN flags: the sender will receive no more / send no more.
inline constexpr uint32_t kShutdownReceive = 1;
inline constexpr uint32_t kShutdownSend = 2;

// 5.10.6.7 Device Events: struct virtio_vsock_event.
inline constexpr uint32_t kEventTransportReset = 0;

}  // namespace hostvisor::virtio_vsock
