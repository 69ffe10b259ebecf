// Parsing the chains of a virtio-scsi device (virtio 1.2, 5.6.6) apart from
// running them: what a command or a control request asks for, checked
// against the chain's buffers before anything is executed.
//
// A command is the device-readable header, CDB (cdb_size bytes) and
// data-out, then the device-writable response header, sense (sense_size
// bytes) and data-in. Nothing is assumed about how the driver splits these
// across descriptors. A chain too short to hold its response cannot be
// answered: a kGuest error (the device then needs a reset). A chain that
// can be answered but is malformed (short header) parses to an answer of
// VIRTIO_SCSI_S_FAILURE.
#pragma once

#include <array>
#include <cstdint>
#include <variant>
#include <vector>

#include "base/result.h"
#include "devices/virtio/descriptor_chain.h"
#include "devices/virtio/scsi/virtio_scsi_spec.h"
#include "memory/guest_memory.h"

namespace hostvisor::virtio_scsi {

// The sizes the driver and device agreed on (config space).
struct Sizes {
  uint32_t cdb_size = kDefaultCdbSize;
  uint32_t sense_size = kDefaultSenseSize;
};

// A command for the one LUN there is (target 0, LUN 0).
struct Command {
  std::vector<uint8_t> cdb;     // cdb_size bytes
  uint64_t data_in_offset = 0;  // in the writable part: after response and sense
  uint64_t data_in_room = 0;    // writable bytes there
  uint64_t data_out_bytes = 0;  // readable bytes after the CDB
};
// Answered at once with `response` and no SCSI status (a LUN that is not
// there, a header cut short).
struct CommandRejected {
  uint8_t response = kResponseFailure;
};
using CommandRequest = std::variant<Command, CommandRejected>;

Result<CommandRequest> parse_command(const GuestMemory& memory, const DescriptorChain& chain, const Sizes& sizes);

// A control-queue request, answered at once: `response` into the response
// byte at `response_offset` of the writable part, after `event_actual`
// (4 zero bytes) for an asynchronous-notification request.
struct ControlAnswer {
  bool notification = false;  // AN query or subscribe: event_actual first
  uint8_t response = kResponseFunctionRejected;
};
Result<ControlAnswer> parse_control(const GuestMemory& memory, const DescriptorChain& chain);

// The LUN field addresses the one target and LUN there is (5.6.6.1: lun[0]
// is 1, lun[1] the target, lun[2..3] the LUN in single-level format).
bool addresses_lun0(const std::array<uint8_t, 8>& lun);

}  // namespace hostvisor::virtio_scsi
