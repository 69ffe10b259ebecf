// A read-only CD-ROM drive as the SCSI MMC command set describes it, over a
// block image (an ISO) read in 2048-byte sectors. One component that every
// transport calls: virtio-scsi hands it the CDB of a request, AHCI the
// command packet of an ATAPI PACKET command; the transport moves the data.
//
// The commands are those Linux's sr_mod/cdrom/isofs and SeaBIOS's CD boot
// use: TEST UNIT READY, REQUEST SENSE, INQUIRY (peripheral type 5,
// removable), READ CAPACITY(10), READ(10)/(12), MODE SENSE(6)/(10) (the
// capabilities page), READ TOC (formats 0 and 1), GET CONFIGURATION, GET
// EVENT STATUS NOTIFICATION (polled, media class), PREVENT ALLOW MEDIUM
// REMOVAL, START STOP UNIT, REPORT LUNS. Anything else is CHECK CONDITION
// with ILLEGAL REQUEST sense.
//
// Every CDB is guest input: its length, every field and every transfer
// length is checked against the image and against the room the transport
// says the guest gave for data. Reads go from the image to the transport's
// sink in bounded chunks, so a large transfer never grows host memory.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/state_codec.h"
#include "block/block_device.h"

namespace hostvisor {

namespace mmc {
inline constexpr uint32_t kSectorSize = 2048;
// SCSI status bytes (SAM).
inline constexpr uint8_t kStatusGood = 0x00;
inline constexpr uint8_t kStatusCheckCondition = 0x02;
// Sense keys and additional sense codes (SPC).
inline constexpr uint8_t kSenseNone = 0x0;
inline constexpr uint8_t kSenseNotReady = 0x2;
inline constexpr uint8_t kSenseMediumError = 0x3;
inline constexpr uint8_t kSenseIllegalRequest = 0x5;
inline constexpr uint8_t kAscInvalidOpcode = 0x20;
inline constexpr uint8_t kAscLbaOutOfRange = 0x21;
inline constexpr uint8_t kAscInvalidFieldInCdb = 0x24;
inline constexpr uint8_t kAscLunNotSupported = 0x25;
inline constexpr uint8_t kAscSavingNotSupported = 0x39;
inline constexpr uint8_t kAscUnrecoveredReadError = 0x11;
// Fixed-format sense data is 18 bytes.
inline constexpr uint32_t kSenseBytes = 18;

// Opcodes.
inline constexpr uint8_t kTestUnitReady = 0x00;
inline constexpr uint8_t kRequestSense = 0x03;
inline constexpr uint8_t kInquiry = 0x12;
inline constexpr uint8_t kModeSense6 = 0x1a;
inline constexpr uint8_t kStartStopUnit = 0x1b;
inline constexpr uint8_t kPreventAllowMediumRemoval = 0x1e;
inline constexpr uint8_t kReadCapacity10 = 0x25;
inline constexpr uint8_t kRead10 = 0x28;
inline constexpr uint8_t kReadToc = 0x43;
inline constexpr uint8_t kGetConfiguration = 0x46;
inline constexpr uint8_t kGetEventStatusNotification = 0x4a;
inline constexpr uint8_t kModeSense10 = 0x5a;
inline constexpr uint8_t kReportLuns = 0xa0;
inline constexpr uint8_t kRead12 = 0xa8;

struct Sense {
  uint8_t key = kSenseNone;
  uint8_t asc = 0;
  uint8_t ascq = 0;
};
// The 18 bytes of fixed-format sense data for `sense`.
std::vector<uint8_t> fixed_sense(const Sense& sense);
}  // namespace mmc

class MmcCdrom {
 public:
  // The longest CDB any command here uses.
  static constexpr size_t kMaxCdbBytes = 16;
  // Bytes read from the image per step of a READ: the host buffer's size.
  static constexpr uint32_t kReadChunk = 64 * 1024;

  // Writes data-in bytes at `offset` of the guest's data buffer; false if
  // they could not be placed (the transport then fails the command).
  using DataSink = std::function<bool(uint64_t offset, std::span<const uint8_t> bytes)>;

  struct Outcome {
    uint8_t status = mmc::kStatusGood;
    // Data-in bytes placed through the sink (from offset 0).
    uint64_t transferred = 0;
    // The command wanted to send more than the transport's room: the
    // transport reports an overrun (nothing was sent).
    bool overrun = false;
    // With kStatusCheckCondition: what went wrong (also kept for REQUEST SENSE).
    mmc::Sense sense;
  };

  // Fails if the image holds not even one sector.
  static Result<std::unique_ptr<MmcCdrom>> create(std::shared_ptr<block::BlockDevice> image);
  // Opens the image at `path` read-only (raw or qcow2, as --disk opens
  // images) and makes the drive for it; errors name the path.
  static Result<std::unique_ptr<MmcCdrom>> open(const std::string& path);
  explicit MmcCdrom(std::shared_ptr<block::BlockDevice> image);

  // Runs the command in `cdb` (as many bytes as the transport has; missing
  // bytes make it an invalid CDB). `data_in_room` is how many bytes the
  // guest's buffers can take.
  Outcome execute(std::span<const uint8_t> cdb, uint64_t data_in_room, const DataSink& sink);

  uint32_t sectors() const { return sectors_; }
  bool removal_prevented() const { return state_.removal_prevented; }

  // The drive's own state: the sense REQUEST SENSE reports next and the
  // medium lock.
  struct State {
    mmc::Sense sense;
    bool removal_prevented = false;
  };
  static constexpr uint32_t kStateVersion = 1;
  State save() const { return state_; }
  void restore(const State& state) { state_ = state; }
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  // Sends `answer`, cut to the CDB's allocation length.
  Outcome answer(std::vector<uint8_t> answer, uint64_t allocation_length, uint64_t room, const DataSink& sink);
  Outcome check_condition(uint8_t key, uint8_t asc, uint8_t ascq = 0);
  Outcome read(uint64_t lba, uint64_t count, uint64_t room, const DataSink& sink);
  Outcome inquiry(std::span<const uint8_t> cdb, uint64_t room, const DataSink& sink);
  Outcome mode_sense(std::span<const uint8_t> cdb, bool ten, uint64_t room, const DataSink& sink);
  Outcome read_toc(std::span<const uint8_t> cdb, uint64_t room, const DataSink& sink);
  Outcome get_configuration(std::span<const uint8_t> cdb, uint64_t room, const DataSink& sink);
  Outcome get_event_status(std::span<const uint8_t> cdb, uint64_t room, const DataSink& sink);

  std::shared_ptr<block::BlockDevice> image_;
  uint32_t sectors_;
  State state_;
  std::vector<uint8_t> buffer_;  // one read chunk
};

}  // namespace hostvisor
