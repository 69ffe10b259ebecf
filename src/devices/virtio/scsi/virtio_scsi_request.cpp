#include "devices/virtio/scsi/virtio_scsi_request.h"

#include <cstring>

namespace hostvisor::virtio_scsi {

bool addresses_lun0(const std::array<uint8_t, 8>& lun) {
  // Linux and SeaBIOS put 0x40 in lun[2]'s top bits (flat addressing) for
  // LUNs above 255; LUN 0 is zero either way.
  return lun[0] == 1 && lun[1] == 0 && (lun[2] & 0x3f) == 0 && lun[3] == 0;
}

Result<CommandRequest> parse_command(const GuestMemory& memory, const DescriptorChain& chain, const Sizes& sizes) {
  if (chain.writable_bytes() < kResponseHeaderBytes)
    return Error(ErrorCode::kGuest, "virtio-scsi: a command chain has " + std::to_string(chain.writable_bytes()) +
                                        " writable bytes, too few for the response (" +
                                        std::to_string(kResponseHeaderBytes) + ")");
  const uint64_t header = uint64_t{kCommandHeaderBytes} + sizes.cdb_size;
  if (chain.readable_bytes() < header) return CommandRequest{CommandRejected{kResponseFailure}};
  std::vector<uint8_t> head(header);
  const uint64_t got = HV_TRY(chain.read(memory, 0, head));
  if (got != header) return CommandRequest{CommandRejected{kResponseFailure}};
  std::array<uint8_t, 8> lun;
  std::memcpy(lun.data(), head.data(), lun.size());
  if (!addresses_lun0(lun)) return CommandRequest{CommandRejected{kResponseBadTarget}};

  Command command;
  command.cdb.assign(head.begin() + kCommandHeaderBytes, head.end());
  command.data_out_bytes = chain.readable_bytes() - header;
  command.data_in_offset = uint64_t{kResponseHeaderBytes} + sizes.sense_size;
  command.data_in_room =
      chain.writable_bytes() > command.data_in_offset ? chain.writable_bytes() - command.data_in_offset : 0;
  return CommandRequest{std::move(command)};
}

Result<ControlAnswer> parse_control(const GuestMemory& memory, const DescriptorChain& chain) {
  uint8_t type_bytes[4] = {};
  const uint64_t got = HV_TRY(chain.read(memory, 0, type_bytes));
  uint32_t type = 0;
  std::memcpy(&type, type_bytes, sizeof type);
  ControlAnswer answer;
  answer.notification = got == sizeof type && (type == kControlAnQuery || type == kControlAnSubscribe);
  const uint64_t needed = answer.notification ? kAnResponseBytes : 1;
  if (chain.writable_bytes() < needed)
    return Error(ErrorCode::kGuest, "virtio-scsi: a control request has " + std::to_string(chain.writable_bytes()) +
                                        " writable bytes, too few for its response (" + std::to_string(needed) + ")");
  if (got != sizeof type) return answer;  // rejected
  if (type == kControlTmf) {
    // Every command is answered before its notification returns, so there
    // is never one to abort or reset: each function completes at once.
    if (chain.readable_bytes() < kTmfRequestBytes) return answer;
    answer.response = kResponseFunctionComplete;
    return answer;
  }
  if (answer.notification) {
    // No asynchronous events are offered: event_actual stays 0.
    if (chain.readable_bytes() < kAnRequestBytes) return answer;
    answer.response = kResponseOk;
    return answer;
  }
  return answer;
}

}  // namespace hostvisor::virtio_scsi
