// virtio SCSI host (virtio 1.2, 5.6) with one target and one LUN: a
// read-only CD-ROM (devices/cdrom/mmc_cdrom.h) over an ISO image. This is
// how `--cdrom ISO` (bus=scsi, the default) reaches the guest: Linux's
// virtio_scsi + sr_mod and SeaBIOS's virtio-scsi driver both find it.
//
// Queues: control (task management and notification queries, answered at
// once: every command is done before its notification returns, so there is
// nothing to abort), event (the driver's buffers wait there; this device
// raises no events) and one request queue.
//
// The image is read on the notifying thread: a CD is read-only, small
// requests dominate, and a chunked read (MmcCdrom::kReadChunk) bounds the
// host memory a request can use.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "block/block_device.h"
#include "devices/cdrom/mmc_cdrom.h"
#include "devices/virtio/scsi/virtio_scsi_request.h"
#include "devices/virtio/scsi/virtio_scsi_spec.h"
#include "devices/virtio/virtio_device_core.h"

namespace hostvisor {

class VirtioScsiCdrom : public VirtioDeviceCore {
 public:
  static constexpr uint16_t kQueueSize = 128;
  // In 512-byte units: 1 MiB per command, what Linux then asks at most.
  static constexpr uint32_t kMaxSectors = 2048;

  explicit VirtioScsiCdrom(std::unique_ptr<MmcCdrom> cdrom);
  // Opens `path` read-only (raw or qcow2, as --disk opens images) and makes
  // the device for it.
  static Result<std::shared_ptr<VirtioScsiCdrom>> open(const std::string& path);

  std::string_view name() const override { return "scsi-cdrom"; }
  uint32_t device_type() const override { return virtio_scsi::kDeviceType; }
  uint64_t device_features() const override;
  uint32_t config_size() const override { return sizeof(virtio_scsi::Config); }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;

  // The drive's sense and lock, and the sizes the driver chose.
  uint32_t state_version() const override { return 1; }
  void save_state(StateWriter& out) const override;
  Result<void> restore_state(StateReader& in, uint32_t version) override;

  // Commands answered, for tests.
  uint64_t commands_completed() const;
  MmcCdrom& cdrom() { return *cdrom_; }

 private:
  void on_reset() override;
  void serve_queue(uint16_t queue) override;
  void serve_control(const DescriptorChain& chain);
  void serve_command(const DescriptorChain& chain);
  // Writes the response header (and sense) and returns the chain.
  void respond(const DescriptorChain& chain, uint8_t response, uint8_t status, const mmc::Sense* sense,
               uint64_t data_in_room, uint64_t transferred);

  std::unique_ptr<MmcCdrom> cdrom_;
  // --- guarded by the core's mutex_
  virtio_scsi::Sizes sizes_;
  uint64_t completed_ = 0;
};

}  // namespace hostvisor
