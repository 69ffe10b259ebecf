// Parsing one virtio-blk chain (virtio 1.2, 5.2.6) into a typed request,
// apart from executing it: what a request asks for, checked against the
// disk, before anything touches the disk.
//
// A chain is a 16-byte device-readable header (type, reserved, sector), the
// data (device-readable for writes, device-writable for reads and GET_ID),
// and one device-writable status byte, the last byte of the chain. Nothing is
// assumed about how the driver splits that across descriptors (2.7.4): a
// header spread over several buffers, or data and status in one buffer, parse
// the same.
//
// A request the device can answer but not serve (bad sector, bad length,
// header missing or in the wrong direction, unknown type, a write to a
// read-only disk) parses to a Reject with the status to answer. A chain with
// no writable byte for the status cannot be answered at all: that is a
// kGuest error, and the device needs a reset.
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include "base/result.h"
#include "devices/virtio/blk/virtio_blk_spec.h"
#include "devices/virtio/descriptor_chain.h"
#include "memory/guest_memory.h"

namespace hostvisor::virtio_blk {

// What the device offers, which decides what a request may ask.
struct DiskLimits {
  uint64_t capacity_sectors = 0;
  bool read_only = false;
  bool discard = false;       // DISCARD was offered
  bool write_zeroes = false;  // WRITE_ZEROES was offered
  uint32_t max_discard_sectors = 0;
  uint32_t max_discard_segments = 0;
  uint32_t max_write_zeroes_sectors = 0;
  uint32_t max_write_zeroes_segments = 0;
};

// IN: `length` bytes from `sector` into the first writable bytes of the chain.
struct ReadRequest {
  uint64_t sector = 0;
  uint64_t length = 0;
};
// OUT: `length` bytes from the readable bytes after the header to `sector`.
struct WriteRequest {
  uint64_t sector = 0;
  uint64_t length = 0;
};
struct FlushRequest {};
// GET_ID: up to `room` bytes of the serial into the writable bytes.
struct GetIdRequest {
  uint64_t room = 0;
};
// DISCARD or WRITE_ZEROES: every segment checked against the disk.
struct SegmentsRequest {
  bool write_zeroes = false;
  std::vector<DiscardWriteZeroesSegment> segments;
};
// Answered with `status` at once, without touching the disk.
struct RejectedRequest {
  uint8_t status = kStatusIoError;
};

using Request = std::variant<ReadRequest, WriteRequest, FlushRequest, GetIdRequest, SegmentsRequest, RejectedRequest>;

Result<Request> parse_request(const GuestMemory& memory, const DescriptorChain& chain, const DiskLimits& limits);

}  // namespace hostvisor::virtio_blk
