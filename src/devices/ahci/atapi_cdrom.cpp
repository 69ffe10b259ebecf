#include "devices/ahci/atapi_cdrom.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "devices/ahci/ahci_spec.h"

namespace hostvisor {

using namespace ahci;

namespace {

constexpr uint8_t kSetFeaturesTransferMode = 0x03;

// Success: device ready, no error (DSC is what drives have always set).
AtaResult good() {
  AtaResult r;
  r.status = kStatusDrdy | kStatusDsc;
  return r;
}

AtaResult aborted() {
  AtaResult r;
  r.status = kStatusDrdy | kStatusErr;
  r.error = kErrorAbrt;
  return r;
}

// An ATA string: two characters a word, the first in the high byte, padded
// with spaces.
void put_ata_string(std::array<uint8_t, AtapiCdrom::kIdentifyBytes>& out, unsigned first_word, unsigned words,
                    const char* text) {
  const size_t length = std::strlen(text);
  for (unsigned i = 0; i < words * 2; ++i) {
    const char c = i < length ? text[i] : ' ';
    out[first_word * 2 + (i ^ 1)] = static_cast<uint8_t>(c);
  }
}

void put_word(std::array<uint8_t, AtapiCdrom::kIdentifyBytes>& out, unsigned word, uint16_t value) {
  out[word * 2] = static_cast<uint8_t>(value);
  out[word * 2 + 1] = static_cast<uint8_t>(value >> 8);
}

}  // namespace

bool AtaResult::failed() const { return status & kStatusErr; }

bool valid_transfer_mode(uint8_t mode) {
  return mode <= 0x01 || (mode >= 0x08 && mode <= 0x0c) || (mode >= 0x20 && mode <= 0x22) ||
         (mode >= 0x40 && mode <= 0x45);
}

AtapiCdrom::AtapiCdrom(std::unique_ptr<MmcCdrom> drive) : drive_(std::move(drive)) {}

AtaResult AtapiCdrom::signature() {
  // ATA8-ACS 9.12: a packet device's signature; status 0 (DRDY is clear
  // until the host identifies it), error 01h (no error detected).
  AtaResult r;
  r.status = 0;
  r.error = 0x01;
  r.count = kSignatureAtapi & 0xff;
  r.lba_low = (kSignatureAtapi >> 8) & 0xff;
  r.lba_mid = (kSignatureAtapi >> 16) & 0xff;
  r.lba_high = kSignatureAtapi >> 24;
  return r;
}

std::array<uint8_t, AtapiCdrom::kIdentifyBytes> AtapiCdrom::identify_data() const {
  std::array<uint8_t, kIdentifyBytes> id{};
  // Word 0: ATAPI (10b), command set 05h (CD-ROM), removable, DRQ within
  // 50 us, 12-byte packets.
  put_word(id, 0, 0x8000 | 0x0500 | 0x0080 | 0x0040);
  put_ata_string(id, 10, 10, "HOSTVISOR-CD0");    // serial number
  put_ata_string(id, 23, 4, "1.0");               // firmware revision
  put_ata_string(id, 27, 20, "HOSTVISR CD-ROM");  // model, as INQUIRY names it
  put_word(id, 49, 0x0300);                       // LBA and DMA supported
  put_word(id, 53, 0x0006);                       // words 64-70 and 88 are valid
  const uint8_t mode = transfer_mode_;
  uint16_t mwdma = 0x0007;  // multiword DMA 0-2 supported, and the one selected
  if (mode >= 0x20 && mode <= 0x22) mwdma |= 1u << (8 + (mode & 7));
  put_word(id, 63, mwdma);
  put_word(id, 64, 0x0003);                                              // PIO 3 and 4
  for (unsigned word = 65; word <= 68; ++word) put_word(id, word, 120);  // cycle times, ns
  put_word(id, 76, 0x0002);                                              // Serial ATA, Gen 1
  put_word(id, 80, 0x01f0);                                              // ATA/ATAPI-4 to ATA8-ACS
  put_word(id, 82, 0x0210);                                              // DEVICE RESET, PACKET feature set
  put_word(id, 83, 0x4000);
  put_word(id, 84, 0x4000);
  put_word(id, 85, 0x0210);
  put_word(id, 87, 0x4000);
  uint16_t udma = 0x003f;  // Ultra DMA 0-5 supported, and the one selected
  if (mode >= 0x40 && mode <= 0x45) udma |= 1u << (8 + (mode & 7));
  put_word(id, 88, udma);
  return id;
}

AtaResult AtapiCdrom::execute(const AtaTaskfile& taskfile, std::span<const uint8_t> packet_bytes, uint64_t room,
                              const MmcCdrom::DataSink& sink) {
  switch (taskfile.command) {
    case kAtaPacket: return packet(taskfile, packet_bytes, room, sink);
    case kAtaIdentifyPacketDevice: return identify(room, sink);
    case kAtaIdentifyDevice: {
      // A packet device aborts it and shows its signature, which tells the
      // host what it is (ATA8-ACS 7.16).
      AtaResult r = signature();
      r.status = kStatusDrdy | kStatusErr;
      r.error = kErrorAbrt;
      return r;
    }
    case kAtaDeviceReset:
    case kAtaExecuteDiagnostic: return signature();
    case kAtaSetFeatures: return set_features(taskfile);
    case kAtaCheckPowerMode: {
      AtaResult r = good();
      r.count = 0xff;  // active or idle
      return r;
    }
    case kAtaIdle:
    case kAtaIdleImmediate:
    case kAtaStandbyImmediate:
    case kAtaSleep: return good();
    default: return aborted();
  }
}

AtaResult AtapiCdrom::identify(uint64_t room, const MmcCdrom::DataSink& sink) {
  if (room < kIdentifyBytes) return aborted();
  const auto id = identify_data();
  if (!sink(0, id)) return aborted();
  AtaResult r = good();
  r.transferred = kIdentifyBytes;
  r.pio = true;
  r.ends_with_pio_setup = true;
  return r;
}

AtaResult AtapiCdrom::set_features(const AtaTaskfile& taskfile) {
  if (taskfile.features != kSetFeaturesTransferMode || !valid_transfer_mode(taskfile.count)) return aborted();
  transfer_mode_ = taskfile.count;
  return good();
}

AtaResult AtapiCdrom::packet(const AtaTaskfile& taskfile, std::span<const uint8_t> packet_bytes, uint64_t room,
                             const MmcCdrom::DataSink& sink) {
  const auto cdb = packet_bytes.first(std::min(packet_bytes.size(), kPacketBytes));
  const MmcCdrom::Outcome outcome = drive_->execute(cdb, room, sink);
  AtaResult r;
  // Interrupt reason at the end of a command: I/O and C/D set.
  r.count = 0x03;
  r.transferred = outcome.transferred;
  r.pio = !(taskfile.features & 0x01) && outcome.transferred > 0;
  if (outcome.overrun) {
    r.status = kStatusDrdy | kStatusErr;
    r.error = kErrorAbrt | (mmc::kSenseIllegalRequest << 4);
  } else if (outcome.status == mmc::kStatusCheckCondition) {
    // CHK, with the sense key in the error register's high nibble (ATA8-APT).
    r.status = kStatusDrdy | kStatusErr;
    r.error = static_cast<uint8_t>(outcome.sense.key << 4);
    if (outcome.sense.key == mmc::kSenseIllegalRequest) r.error |= kErrorAbrt;
  } else {
    r.status = kStatusDrdy | kStatusDsc;
  }
  return r;
}

void AtapiCdrom::restore(const State& state) {
  transfer_mode_ = state.transfer_mode;
  drive_->restore(state.drive);
}

void AtapiCdrom::encode_state(StateWriter& out, const State& state) {
  out.put(state.transfer_mode);
  MmcCdrom::encode_state(out, state.drive);
}

AtapiCdrom::State AtapiCdrom::decode_state(StateReader& in) {
  State state;
  state.transfer_mode = in.get<uint8_t>();
  if (!valid_transfer_mode(state.transfer_mode))
    in.fail("transfer mode " + std::to_string(state.transfer_mode) + " is not one SET FEATURES takes");
  state.drive = MmcCdrom::decode_state(in);
  return state;
}

}  // namespace hostvisor
