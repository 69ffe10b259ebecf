#include "devices/virtio/scsi/virtio_scsi.h"

#include <algorithm>
#include <cstring>
#include <variant>

#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

using namespace virtio_scsi;

VirtioScsiCdrom::VirtioScsiCdrom(std::unique_ptr<MmcCdrom> cdrom)
    : VirtioDeviceCore(3, kQueueSize), cdrom_(std::move(cdrom)) {}

uint64_t VirtioScsiCdrom::device_features() const {
  // No INOUT (a CD-ROM never takes data-out and sends data-in at once), no
  // hotplug or change events.
  return virtio::feature_bit(virtio::kFeatureIndirectDesc) | virtio::feature_bit(virtio::kFeatureEventIdx);
}

void VirtioScsiCdrom::read_config(uint64_t offset, std::span<uint8_t> data) {
  Config c{};
  c.num_queues = 1;
  c.seg_max = kQueueSize - 2;  // the header and the response take two
  c.max_sectors = kMaxSectors;
  c.cmd_per_lun = kQueueSize;
  c.event_info_size = 16;  // struct virtio_scsi_event
  {
    std::lock_guard lock(mutex_);
    c.sense_size = sizes_.sense_size;
    c.cdb_size = sizes_.cdb_size;
  }
  c.max_channel = 0;
  c.max_target = 0;
  c.max_lun = 0;
  std::fill(data.begin(), data.end(), 0);
  if (offset >= sizeof c) return;
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(&c) + offset,
              std::min<uint64_t>(data.size(), sizeof c - offset));
}

void VirtioScsiCdrom::write_config(uint64_t offset, std::span<const uint8_t> data) {
  // Only sense_size and cdb_size are the driver's to write, as whole fields
  // (5.6.4); a value beyond what is accepted is ignored.
  if (data.size() != 4) return;
  uint32_t value;
  std::memcpy(&value, data.data(), 4);
  std::lock_guard lock(mutex_);
  if (offset == kConfigSenseSizeOffset && value <= kMaxSenseSize) sizes_.sense_size = value;
  if (offset == kConfigCdbSizeOffset && value <= kMaxCdbSize) sizes_.cdb_size = value;
}

Result<std::shared_ptr<VirtioScsiCdrom>> VirtioScsiCdrom::open(const std::string& path) {
  return std::make_shared<VirtioScsiCdrom>(HV_TRY(MmcCdrom::open(path)));
}

uint64_t VirtioScsiCdrom::commands_completed() const {
  std::lock_guard lock(mutex_);
  return completed_;
}

void VirtioScsiCdrom::on_reset() {}

void VirtioScsiCdrom::serve_queue(uint16_t queue) {
  // The event queue's buffers stay with the device: there are no events.
  if (queue == kEventQueue) return;
  while (auto chain = next_chain(queue)) {
    if (queue == kControlQueue) {
      serve_control(*chain);
    } else {
      serve_command(*chain);
    }
    if (!running()) return;
  }
}

void VirtioScsiCdrom::serve_control(const DescriptorChain& chain) {
  auto parsed = parse_control(memory(), chain);
  if (!parsed) return fail_guest_misuse(parsed.error());
  uint8_t out[kAnResponseBytes] = {};
  size_t length = 1;
  if (parsed->notification) {
    out[4] = parsed->response;  // event_actual (0) first
    length = kAnResponseBytes;
  } else {
    out[0] = parsed->response;
  }
  auto written = chain.write(memory(), 0, std::span<const uint8_t>(out, length));
  if (!written) return fail_guest_misuse(written.error());
  complete(kControlQueue, chain, *written);
}

void VirtioScsiCdrom::serve_command(const DescriptorChain& chain) {
  auto parsed = parse_command(memory(), chain, sizes_);
  if (!parsed) return fail_guest_misuse(parsed.error());
  if (auto* rejected = std::get_if<CommandRejected>(&*parsed))
    return respond(chain, rejected->response, 0, nullptr, 0, 0);
  const Command& command = std::get<Command>(*parsed);
  bool sink_failed = false;
  const MmcCdrom::DataSink sink = [&](uint64_t offset, std::span<const uint8_t> bytes) {
    auto written = chain.write(memory(), command.data_in_offset + offset, bytes);
    if (!written || *written != bytes.size()) {
      sink_failed = true;
      return false;
    }
    return true;
  };
  const MmcCdrom::Outcome outcome = cdrom_->execute(command.cdb, command.data_in_room, sink);
  if (sink_failed) return fail_guest_misuse(Error(ErrorCode::kGuest, "virtio-scsi: the data-in buffers changed"));
  if (outcome.overrun) return respond(chain, kResponseOverrun, 0, nullptr, command.data_in_room, 0);
  respond(chain, kResponseOk, outcome.status, outcome.status == mmc::kStatusCheckCondition ? &outcome.sense : nullptr,
          command.data_in_room, outcome.transferred);
}

void VirtioScsiCdrom::respond(const DescriptorChain& chain, uint8_t response, uint8_t status, const mmc::Sense* sense,
                              uint64_t data_in_room, uint64_t transferred) {
  std::vector<uint8_t> sense_bytes;
  if (sense) {
    sense_bytes = mmc::fixed_sense(*sense);
    sense_bytes.resize(std::min<size_t>(sense_bytes.size(), sizes_.sense_size));
  }
  std::vector<uint8_t> head(kResponseHeaderBytes, 0);
  const uint32_t sense_len = static_cast<uint32_t>(sense_bytes.size());
  // The residual: data-in room the command did not fill (the counts fit 32
  // bits: a chain is at most a queue's worth of 4 GiB buffers only in
  // theory, and the driver reads the low bits).
  const uint32_t residual = static_cast<uint32_t>(data_in_room - std::min(data_in_room, transferred));
  std::memcpy(head.data(), &sense_len, 4);
  std::memcpy(head.data() + 4, &residual, 4);
  head[10] = status;
  head[11] = response;
  head.insert(head.end(), sense_bytes.begin(), sense_bytes.end());
  auto written = chain.write(memory(), 0, head);
  if (!written) return fail_guest_misuse(written.error());
  const uint64_t data_end = transferred > 0 ? uint64_t{kResponseHeaderBytes} + sizes_.sense_size + transferred : 0;
  if (complete(kRequestQueue, chain, std::max<uint64_t>(*written, data_end))) ++completed_;
}

void VirtioScsiCdrom::save_state(StateWriter& out) const {
  MmcCdrom::encode_state(out, cdrom_->save());
  out.put(sizes_.cdb_size);
  out.put(sizes_.sense_size);
}

Result<void> VirtioScsiCdrom::restore_state(StateReader& in, uint32_t) {
  const MmcCdrom::State drive = MmcCdrom::decode_state(in);
  Sizes sizes;
  sizes.cdb_size = in.get<uint32_t>();
  sizes.sense_size = in.get<uint32_t>();
  if (sizes.cdb_size > kMaxCdbSize || sizes.sense_size > kMaxSenseSize) in.fail("cdb or sense size out of range");
  if (!in.ok()) return in.finish();
  cdrom_->restore(drive);
  sizes_ = sizes;
  return ok();
}

}  // namespace hostvisor
