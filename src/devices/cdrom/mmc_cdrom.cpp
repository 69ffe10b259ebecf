#include "devices/cdrom/mmc_cdrom.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "base/log.h"
#include "base/log_rate_limit.h"

namespace hostvisor {

namespace mmc {
std::vector<uint8_t> fixed_sense(const Sense& sense) {
  std::vector<uint8_t> out(kSenseBytes, 0);
  out[0] = 0x70;  // current error, fixed format
  out[2] = sense.key & 0x0f;
  out[7] = kSenseBytes - 8;  // additional sense length
  out[12] = sense.asc;
  out[13] = sense.ascq;
  return out;
}
}  // namespace mmc

namespace {

using namespace mmc;

uint32_t be16(std::span<const uint8_t> b, size_t at) { return uint32_t{b[at]} << 8 | b[at + 1]; }
uint32_t be32(std::span<const uint8_t> b, size_t at) {
  return uint32_t{b[at]} << 24 | uint32_t{b[at + 1]} << 16 | uint32_t{b[at + 2]} << 8 | b[at + 3];
}
void put_be16(std::vector<uint8_t>& v, size_t at, uint32_t x) {
  v[at] = static_cast<uint8_t>(x >> 8);
  v[at + 1] = static_cast<uint8_t>(x);
}
void put_be32(std::vector<uint8_t>& v, size_t at, uint32_t x) {
  for (int i = 0; i < 4; ++i) v[at + i] = static_cast<uint8_t>(x >> (24 - 8 * i));
}
void put_text(std::vector<uint8_t>& v, size_t at, size_t width, const char* text) {
  const size_t n = std::min(width, std::strlen(text));
  std::memset(v.data() + at, ' ', width);
  std::memcpy(v.data() + at, text, n);
}

// The CDB length each opcode group has (SPC 4.3.2); groups 3, 6 and 7 are
// reserved or vendor-specific, and nothing here uses them.
size_t cdb_length(uint8_t opcode) {
  switch (opcode >> 5) {
    case 0: return 6;
    case 1:
    case 2: return 10;
    case 4: return 16;
    case 5: return 12;
    default: return 0;
  }
}

// MSF address of an LBA (MMC: LBA 0 is 00:02:00, 75 frames a second).
void put_msf(std::vector<uint8_t>& v, size_t at, uint32_t lba) {
  const uint32_t frames = lba + 150;
  v[at] = 0;
  v[at + 1] = static_cast<uint8_t>(frames / (75 * 60));
  v[at + 2] = static_cast<uint8_t>(frames / 75 % 60);
  v[at + 3] = static_cast<uint8_t>(frames % 75);
}

constexpr uint8_t kProfileCdrom = 0x0008;  // MMC: the medium is a CD-ROM
constexpr uint8_t kPageCapabilities = 0x2a;
constexpr uint8_t kPageAll = 0x3f;

}  // namespace

Result<std::unique_ptr<MmcCdrom>> MmcCdrom::create(std::shared_ptr<block::BlockDevice> image) {
  if (image->virtual_size() < kSectorSize)
    return Error(ErrorCode::kInvalidArgument, "the image holds " + std::to_string(image->virtual_size()) +
                                                  " bytes, less than one 2048-byte CD sector");
  return std::make_unique<MmcCdrom>(std::move(image));
}

MmcCdrom::MmcCdrom(std::shared_ptr<block::BlockDevice> image)
    : image_(std::move(image)),
      // A trailing partial sector cannot be addressed; READ CAPACITY's
      // last LBA is 32 bits.
      sectors_(static_cast<uint32_t>(std::min<uint64_t>(image_->virtual_size() / kSectorSize, 0xffffffffu))) {}

MmcCdrom::Outcome MmcCdrom::check_condition(uint8_t key, uint8_t asc, uint8_t ascq) {
  Outcome out;
  out.status = kStatusCheckCondition;
  out.sense = Sense{key, asc, ascq};
  state_.sense = out.sense;
  return out;
}

MmcCdrom::Outcome MmcCdrom::answer(std::vector<uint8_t> bytes, uint64_t allocation_length, uint64_t room,
                                   const DataSink& sink) {
  // SPC: the device sends at most the allocation length; a short buffer
  // for what that leaves is the transport's overrun.
  const uint64_t length = std::min<uint64_t>(bytes.size(), allocation_length);
  Outcome out;
  if (length > room) {
    out.overrun = true;
    return out;
  }
  if (length > 0 && !sink(0, std::span<const uint8_t>(bytes.data(), length))) {
    out.overrun = true;
    return out;
  }
  out.transferred = length;
  return out;
}

MmcCdrom::Outcome MmcCdrom::execute(std::span<const uint8_t> cdb, uint64_t room, const DataSink& sink) {
  if (cdb.empty()) return check_condition(kSenseIllegalRequest, kAscInvalidOpcode);
  const uint8_t opcode = cdb[0];
  const size_t needed = cdb_length(opcode);
  if (needed == 0) return check_condition(kSenseIllegalRequest, kAscInvalidOpcode);
  if (cdb.size() < needed) return check_condition(kSenseIllegalRequest, kAscInvalidFieldInCdb);
  // Any command but REQUEST SENSE consumes the sense it leaves behind.
  if (opcode != kRequestSense) state_.sense = Sense{};

  switch (opcode) {
    case kTestUnitReady: return Outcome{};
    case kRequestSense: {
      // Descriptor-format sense (DESC) is not offered: always fixed.
      std::vector<uint8_t> sense = fixed_sense(state_.sense);
      state_.sense = Sense{};
      return answer(std::move(sense), cdb[4], room, sink);
    }
    case kInquiry: return inquiry(cdb, room, sink);
    case kModeSense6: return mode_sense(cdb, false, room, sink);
    case kModeSense10: return mode_sense(cdb, true, room, sink);
    case kStartStopUnit:
      // Spinning up or down means nothing for an image; an eject keeps the
      // medium (it cannot be changed from the guest).
      return Outcome{};
    case kPreventAllowMediumRemoval: state_.removal_prevented = (cdb[4] & 1) != 0; return Outcome{};
    case kReadCapacity10: {
      std::vector<uint8_t> data(8);
      put_be32(data, 0, sectors_ - 1);
      put_be32(data, 4, kSectorSize);
      return answer(std::move(data), 8, room, sink);
    }
    case kRead10: return read(be32(cdb, 2), be16(cdb, 7), room, sink);
    case kRead12: return read(be32(cdb, 2), be32(cdb, 6), room, sink);
    case kReadToc: return read_toc(cdb, room, sink);
    case kGetConfiguration: return get_configuration(cdb, room, sink);
    case kGetEventStatusNotification: return get_event_status(cdb, room, sink);
    case kReportLuns: {
      // One LUN, number 0.
      std::vector<uint8_t> data(16, 0);
      put_be32(data, 0, 8);
      return answer(std::move(data), be32(cdb, 6), room, sink);
    }
    default: return check_condition(kSenseIllegalRequest, kAscInvalidOpcode);
  }
}

MmcCdrom::Outcome MmcCdrom::read(uint64_t lba, uint64_t count, uint64_t room, const DataSink& sink) {
  if (lba > sectors_ || count > sectors_ - lba) return check_condition(kSenseIllegalRequest, kAscLbaOutOfRange);
  const uint64_t bytes = count * kSectorSize;
  Outcome out;
  if (bytes > room) {
    out.overrun = true;
    return out;
  }
  buffer_.resize(std::min<uint64_t>(bytes, kReadChunk));
  uint64_t done = 0;
  while (done < bytes) {
    const uint64_t step = std::min<uint64_t>(bytes - done, kReadChunk);
    if (auto r = image_->read(lba * kSectorSize + done, buffer_.data(), step); !r) {
      HV_LOG_WARN_LIMITED("cdrom: reading sector {}: {}", lba + done / kSectorSize, r.error().message());
      Outcome failed = check_condition(kSenseMediumError, kAscUnrecoveredReadError);
      failed.transferred = done;
      return failed;
    }
    if (!sink(done, std::span<const uint8_t>(buffer_.data(), step))) {
      out.overrun = true;
      out.transferred = done;
      return out;
    }
    done += step;
  }
  out.transferred = bytes;
  return out;
}

MmcCdrom::Outcome MmcCdrom::inquiry(std::span<const uint8_t> cdb, uint64_t room, const DataSink& sink) {
  const uint32_t allocation = be16(cdb, 3);
  if (cdb[1] & 1) {
    // Vital product data: only the list of pages is offered.
    if (cdb[2] != 0x00) return check_condition(kSenseIllegalRequest, kAscInvalidFieldInCdb);
    std::vector<uint8_t> data = {0x05, 0x00, 0x00, 0x01, 0x00};
    return answer(std::move(data), allocation, room, sink);
  }
  if (cdb[2] != 0) return check_condition(kSenseIllegalRequest, kAscInvalidFieldInCdb);
  std::vector<uint8_t> data(36, 0);
  data[0] = 0x05;  // peripheral qualifier 0, device type 5: CD/DVD
  data[1] = 0x80;  // removable medium
  data[2] = 0x05;  // SPC-3
  data[3] = 0x02;  // response data format 2
  data[4] = static_cast<uint8_t>(data.size() - 5);
  put_text(data, 8, 8, "HOSTVISR");
  put_text(data, 16, 16, "CD-ROM");
  put_text(data, 32, 4, "1.0");
  return answer(std::move(data), allocation, room, sink);
}

MmcCdrom::Outcome MmcCdrom::mode_sense(std::span<const uint8_t> cdb, bool ten, uint64_t room, const DataSink& sink) {
  const uint8_t page = cdb[2] & 0x3f;
  const uint8_t control = cdb[2] >> 6;  // 0 current, 1 changeable, 2 default, 3 saved
  if (control == 3) return check_condition(kSenseIllegalRequest, kAscSavingNotSupported);
  if (page != kPageCapabilities && page != kPageAll)
    return check_condition(kSenseIllegalRequest, kAscInvalidFieldInCdb);
  if (cdb[3] != 0 && cdb[3] != 0xff) return check_condition(kSenseIllegalRequest, kAscInvalidFieldInCdb);

  // The CD capabilities and mechanical status page (MMC-3 6.3.11).
  std::vector<uint8_t> capabilities(22, 0);
  capabilities[0] = kPageCapabilities;
  capabilities[1] = static_cast<uint8_t>(capabilities.size() - 2);
  if (control != 1) {        // changeable values: none
    capabilities[2] = 0x01;  // reads CD-R
    capabilities[5] = 0x00;
    capabilities[6] = 0x29;            // tray loader (001b), eject, lock
    put_be16(capabilities, 8, 1412);   // maximum read speed, kB/s (8x)
    put_be16(capabilities, 12, 64);    // buffer size, KiB
    put_be16(capabilities, 14, 1412);  // current read speed
  }
  const size_t header = ten ? 8 : 4;
  std::vector<uint8_t> data(header, 0);
  data.insert(data.end(), capabilities.begin(), capabilities.end());
  if (ten) {
    put_be16(data, 0, static_cast<uint32_t>(data.size() - 2));
    return answer(std::move(data), be16(cdb, 7), room, sink);
  }
  data[0] = static_cast<uint8_t>(data.size() - 1);
  return answer(std::move(data), cdb[4], room, sink);
}

MmcCdrom::Outcome MmcCdrom::read_toc(std::span<const uint8_t> cdb, uint64_t room, const DataSink& sink) {
  const bool msf = (cdb[1] & 0x02) != 0;
  // The format is in byte 2; old drivers (SFF-8020) put it in byte 9's top bits.
  uint8_t format = cdb[2] & 0x0f;
  if (format == 0) format = cdb[9] >> 6;
  const uint8_t track = cdb[6];
  const uint32_t allocation = be16(cdb, 7);
  auto put_address = [msf](std::vector<uint8_t>& v, size_t at, uint32_t lba) {
    if (msf) {
      put_msf(v, at, lba);
    } else {
      put_be32(v, at, lba);
    }
  };
  switch (format) {
    case 0: {  // the TOC: one data track and the lead-out
      if (track > 1 && track != 0xaa) return check_condition(kSenseIllegalRequest, kAscInvalidFieldInCdb);
      std::vector<uint8_t> data(4, 0);
      data[2] = 1;  // first track
      data[3] = 1;  // last track
      auto descriptor = [&](uint8_t number, uint32_t lba) {
        const size_t at = data.size();
        data.resize(at + 8, 0);
        data[at + 1] = 0x14;  // ADR 1 (position), control 4 (data track)
        data[at + 2] = number;
        put_address(data, at + 4, lba);
      };
      if (track <= 1) descriptor(1, 0);
      descriptor(0xaa, sectors_);
      put_be16(data, 0, static_cast<uint32_t>(data.size() - 2));
      return answer(std::move(data), allocation, room, sink);
    }
    case 1: {  // session information: one session, starting at track 1
      std::vector<uint8_t> data(12, 0);
      put_be16(data, 0, 10);
      data[2] = 1;
      data[3] = 1;
      data[5] = 0x14;
      data[6] = 1;
      put_address(data, 8, 0);
      return answer(std::move(data), allocation, room, sink);
    }
    default: return check_condition(kSenseIllegalRequest, kAscInvalidFieldInCdb);
  }
}

MmcCdrom::Outcome MmcCdrom::get_configuration(std::span<const uint8_t> cdb, uint64_t room, const DataSink& sink) {
  const uint8_t requested_type = cdb[1] & 0x03;  // 0 all, 1 current, 2 the one named
  if (requested_type == 3) return check_condition(kSenseIllegalRequest, kAscInvalidFieldInCdb);
  const uint32_t start = be16(cdb, 2);
  std::vector<uint8_t> data(8, 0);
  put_be16(data, 6, kProfileCdrom);
  auto feature = [&](uint32_t code, std::vector<uint8_t> body) {
    if (code < start || (requested_type == 2 && code != start)) return;
    const size_t at = data.size();
    data.resize(at + 4, 0);
    put_be16(data, at, code);
    data[at + 2] = 0x03;  // persistent, current
    data[at + 3] = static_cast<uint8_t>(body.size());
    data.insert(data.end(), body.begin(), body.end());
  };
  feature(0x0000, {0x00, kProfileCdrom, 0x01, 0x00});                 // the profile list: CD-ROM, current
  feature(0x0001, {0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00});  // core: SCSI interface
  feature(0x0003, {0x29, 0x00, 0x00, 0x00});                          // removable medium: tray, eject, lock
  put_be32(data, 0, static_cast<uint32_t>(data.size() - 4));
  return answer(std::move(data), be16(cdb, 7), room, sink);
}

MmcCdrom::Outcome MmcCdrom::get_event_status(std::span<const uint8_t> cdb, uint64_t room, const DataSink& sink) {
  // Only polled operation: there is no asynchronous notification.
  if ((cdb[1] & 1) == 0) return check_condition(kSenseIllegalRequest, kAscInvalidFieldInCdb);
  constexpr uint8_t kMediaClass = 0x10;
  std::vector<uint8_t> data(4, 0);
  data[3] = kMediaClass;  // the classes supported
  if (cdb[4] & kMediaClass) {
    data[2] = 4;                                        // the media class
    data.insert(data.end(), {0x00, 0x02, 0x00, 0x00});  // no change, medium present, tray closed
  } else {
    data[2] = 0x80;  // no event available of the classes asked
  }
  put_be16(data, 0, static_cast<uint32_t>(data.size() - 2));
  return answer(std::move(data), be16(cdb, 7), room, sink);
}

void MmcCdrom::encode_state(StateWriter& out, const State& state) {
  out.put(state.sense.key);
  out.put(state.sense.asc);
  out.put(state.sense.ascq);
  out.put_bool(state.removal_prevented);
}

MmcCdrom::State MmcCdrom::decode_state(StateReader& in) {
  State state;
  state.sense.key = in.get<uint8_t>();
  state.sense.asc = in.get<uint8_t>();
  state.sense.ascq = in.get<uint8_t>();
  state.removal_prevented = in.get_bool();
  if (state.sense.key > 0x0f) in.fail("sense key " + std::to_string(state.sense.key) + " is out of range");
  return state;
}

}  // namespace hostvisor
