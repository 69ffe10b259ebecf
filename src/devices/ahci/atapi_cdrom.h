// The ATA side of an ATAPI CD-ROM: what the drive does with the commands of
// a register FIS (ATA8-ACS, and the PACKET feature set of ATA8-APT). The
// SCSI/MMC commands inside PACKET go to the transport-neutral drive
// (devices/cdrom/mmc_cdrom.h), the same one virtio-scsi uses; this layer
// only adds what ATA puts around them: the signature a packet device
// reports after a reset, IDENTIFY PACKET DEVICE, IDENTIFY DEVICE aborted
// as packet devices do (with the signature in the registers, so the host
// knows to send IDENTIFY PACKET DEVICE), SET FEATURES (the transfer mode),
// DEVICE RESET, and sense keys in the error register.
//
// It knows nothing of AHCI: the HBA hands it the task file and the packet,
// the room its PRDT gives and a sink, and turns the answer into FISes.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>

#include "base/state_codec.h"
#include "devices/cdrom/mmc_cdrom.h"

namespace hostvisor {

// The registers of a register FIS, host to device.
struct AtaTaskfile {
  uint8_t command = 0;
  uint8_t features = 0;
  uint8_t count = 0;
  uint8_t lba_low = 0;
  uint8_t lba_mid = 0;
  uint8_t lba_high = 0;
  uint8_t device = 0;
};

// What the device answers: the registers of its D2H FIS and how the data
// went.
struct AtaResult {
  uint8_t status = 0;
  uint8_t error = 0;
  uint8_t count = 0;
  uint8_t lba_low = 0;
  uint8_t lba_mid = 0;
  uint8_t lba_high = 0;
  uint8_t device = 0;
  // Data-in bytes placed through the sink.
  uint64_t transferred = 0;
  // The data went by PIO (a PIO setup FIS announces it), not DMA.
  bool pio = false;
  // A PIO data-in command of the ATA command set ends with its PIO setup
  // FIS: the device sends no D2H register FIS after it (ATA8-AST).
  bool ends_with_pio_setup = false;
  bool failed() const;
};

class AtapiCdrom {
 public:
  // IDENTIFY (PACKET) DEVICE data: 256 words.
  static constexpr uint32_t kIdentifyBytes = 512;
  // The command packet is 12 bytes (IDENTIFY word 0 says so).
  static constexpr size_t kPacketBytes = 12;

  explicit AtapiCdrom(std::unique_ptr<MmcCdrom> drive);

  // Runs the command of `taskfile`; `packet` is the command packet of a
  // PACKET command (the HBA's ACMD). `room` is how many bytes the host's
  // buffers take.
  AtaResult execute(const AtaTaskfile& taskfile, std::span<const uint8_t> packet, uint64_t room,
                    const MmcCdrom::DataSink& sink);
  // The registers after a reset (power-on, COMRESET, SRST, DEVICE RESET):
  // the packet device's signature and "diagnostics passed".
  static AtaResult signature();

  std::array<uint8_t, kIdentifyBytes> identify_data() const;
  MmcCdrom& drive() { return *drive_; }

  // The transfer mode SET FEATURES chose (0: the default PIO mode) and the drive's own state.
  struct State {
    uint8_t transfer_mode = 0;
    MmcCdrom::State drive;
  };
  State save() const { return {transfer_mode_, drive_->save()}; }
  void restore(const State& state);
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  AtaResult packet(const AtaTaskfile& taskfile, std::span<const uint8_t> packet, uint64_t room,
                   const MmcCdrom::DataSink& sink);
  AtaResult identify(uint64_t room, const MmcCdrom::DataSink& sink);
  AtaResult set_features(const AtaTaskfile& taskfile);

  std::unique_ptr<MmcCdrom> drive_;
  uint8_t transfer_mode_ = 0;
};

// True when `mode` is a transfer mode SET FEATURES may select here: PIO
// default (0x00, 0x01), PIO 0-4 (0x08-0x0c), multiword DMA 0-2
// (0x20-0x22), Ultra DMA 0-5 (0x40-0x45).
bool valid_transfer_mode(uint8_t mode);

}  // namespace hostvisor
