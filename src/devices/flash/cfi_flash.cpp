#include "devices/flash/cfi_flash.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace hostvisor {

namespace {
// The CFI query structure (JEDEC JESD68), at byte offsets of a x8 device.
constexpr uint64_t kQueryString = 0x10;          // "QRY"
constexpr uint64_t kPrimaryCommandSet = 0x13;    // 16-bit: 0x0001, Intel/Sharp extended
constexpr uint64_t kVccMin = 0x1b;               // BCD volts
constexpr uint64_t kVccMax = 0x1c;
constexpr uint64_t kTypicalProgramTime = 0x1f;   // 2^n us
constexpr uint64_t kTypicalEraseTime = 0x21;     // 2^n ms
constexpr uint64_t kMaxProgramTime = 0x23;       // 2^n times typical
constexpr uint64_t kMaxEraseTime = 0x25;
constexpr uint64_t kDeviceSize = 0x27;           // 2^n bytes
constexpr uint64_t kInterface = 0x28;            // 16-bit: 0 = x8 only
constexpr uint64_t kEraseRegionCount = 0x2c;
constexpr uint64_t kEraseRegion0 = 0x2d;  // 16-bit blocks - 1, 16-bit block size / 256
constexpr uint64_t kQueryEnd = 0x31;
}  // namespace

Result<std::shared_ptr<CfiFlash>> CfiFlash::create(std::vector<uint8_t> contents, uint64_t block_size,
                                                   UniqueFd backing, bool read_only) {
  if (block_size < 256 || !std::has_single_bit(block_size) || block_size > (uint64_t{0xffff} << 8))
    return Error(ErrorCode::kInvalidArgument,
                 "flash block size " + std::to_string(block_size) + ": must be a power of two from 256 bytes");
  if (contents.empty() || contents.size() % block_size != 0 || contents.size() / block_size > 0x10000)
    return Error(ErrorCode::kInvalidArgument, "a flash bank of " + std::to_string(contents.size()) +
                                                  " bytes: must be 1 to 65536 whole blocks of " +
                                                  std::to_string(block_size) + " bytes");
  return std::shared_ptr<CfiFlash>(new CfiFlash(std::move(contents), block_size, std::move(backing), read_only));
}

CfiFlash::CfiFlash(std::vector<uint8_t> contents, uint64_t block_size, UniqueFd backing, bool read_only)
    : array_(std::move(contents)), block_size_(block_size), backing_(std::move(backing)), read_only_(read_only) {}

std::vector<uint8_t> CfiFlash::contents() const {
  std::lock_guard lock(mutex_);
  return array_;
}

uint8_t CfiFlash::query_byte(uint64_t offset) const {
  const uint64_t blocks = array_.size() / block_size_;
  switch (offset) {
    case kQueryString: return 'Q';
    case kQueryString + 1: return 'R';
    case kQueryString + 2: return 'Y';
    case kPrimaryCommandSet: return 0x01;
    case kVccMin: return 0x45;
    case kVccMax: return 0x55;
    case kTypicalProgramTime: return 0x04;  // 16 us
    case kTypicalEraseTime: return 0x0a;    // 1 s
    case kMaxProgramTime: return 0x04;
    case kMaxEraseTime: return 0x04;
    // The smallest power of two holding the bank (a bank need not be one).
    case kDeviceSize: return static_cast<uint8_t>(std::bit_width(array_.size() - 1));
    case kInterface: return 0x00;
    case kEraseRegionCount: return 1;
    case kEraseRegion0: return static_cast<uint8_t>(blocks - 1);
    case kEraseRegion0 + 1: return static_cast<uint8_t>((blocks - 1) >> 8);
    case kEraseRegion0 + 2: return static_cast<uint8_t>(block_size_ >> 8);
    case kEraseRegion0 + 3: return static_cast<uint8_t>(block_size_ >> 16);
    default: return 0;
  }
  static_assert(kEraseRegion0 + 4 == kQueryEnd);
}

void CfiFlash::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    switch (mode_) {
      case Mode::kReadArray: data[i] = at < array_.size() ? array_[at] : 0xff; break;
      case Mode::kReadIdentifier:
        data[i] = at == 0 ? cfi::kManufacturerIntel : at == 1 ? cfi::kDeviceId : 0;
        break;
      case Mode::kQuery: data[i] = query_byte(at); break;
      // Between a command and its data or confirmation, and after an
      // operation, the bank answers with its status.
      default: data[i] = status_; break;
    }
  }
}

void CfiFlash::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  std::lock_guard lock(mutex_);
  const uint8_t command = data[0];
  switch (mode_) {
    case Mode::kProgramSetup:
      program(offset, data);
      mode_ = Mode::kReadStatus;
      return;
    case Mode::kEraseSetup:
      if (command == cfi::kEraseConfirm) {
        erase_block(offset);
      } else {
        // Not the confirmation: a command sequence error, nothing erased.
        status_ |= cfi::kStatusReady | cfi::kStatusEraseError | cfi::kStatusProgramError;
      }
      mode_ = Mode::kReadStatus;
      return;
    default: break;
  }
  switch (command) {
    case cfi::kProgram:
    case cfi::kProgramAlternate: mode_ = Mode::kProgramSetup; break;
    case cfi::kBlockErase: mode_ = Mode::kEraseSetup; break;
    case cfi::kClearStatus:
      // Back to the array as well: OVMF's probe reads the array right after
      // it, and takes a 0x50 read back for RAM.
      status_ = 0;
      mode_ = Mode::kReadArray;
      break;
    case cfi::kReadStatus: mode_ = Mode::kReadStatus; break;
    case cfi::kReadIdentifier: mode_ = Mode::kReadIdentifier; break;
    case cfi::kQuery: mode_ = Mode::kQuery; break;
    // 0xFF, and anything this bank does not implement (lock bits, buffered
    // writes, suspend): the array, as a reset would leave it.
    default: mode_ = Mode::kReadArray; break;
  }
}

void CfiFlash::program(uint64_t offset, std::span<const uint8_t> data) {
  if (read_only_ || offset >= array_.size() || data.size() > array_.size() - offset) {
    status_ |= cfi::kStatusReady | cfi::kStatusProgramError | (read_only_ ? cfi::kStatusBlockLocked : 0);
    return;
  }
  for (size_t i = 0; i < data.size(); ++i) array_[offset + i] &= data[i];
  status_ |= cfi::kStatusReady;
  persist(offset, data.size());
}

void CfiFlash::erase_block(uint64_t offset) {
  if (read_only_ || offset >= array_.size()) {
    status_ |= cfi::kStatusReady | cfi::kStatusEraseError | (read_only_ ? cfi::kStatusBlockLocked : 0);
    return;
  }
  const uint64_t start = offset & ~(block_size_ - 1);
  std::fill_n(array_.begin() + static_cast<std::ptrdiff_t>(start), block_size_, 0xff);
  status_ |= cfi::kStatusReady;
  persist(start, block_size_);
}

void CfiFlash::persist(uint64_t offset, uint64_t length) {
  if (!backing_.valid()) return;
  const ssize_t n = ::pwrite(backing_.get(), array_.data() + offset, length, static_cast<off_t>(offset));
  if (n == static_cast<ssize_t>(length)) return;
  // The guest's view stays consistent; only persistence is lost. Once.
  if (!persist_failed_)
    HV_LOG_WARN("flash: writing its backing file failed ({}); the firmware's variables will not persist",
                n < 0 ? std::strerror(errno) : "short write");
  persist_failed_ = true;
}

CfiFlash::State CfiFlash::save() const {
  std::lock_guard lock(mutex_);
  return State{mode_, status_};
}

Result<void> CfiFlash::restore(const State& state) {
  if (state.mode > Mode::kEraseSetup)
    return Error(ErrorCode::kInvalidArgument,
                 "flash state: command mode " + std::to_string(static_cast<int>(state.mode)) + " is not one");
  std::lock_guard lock(mutex_);
  mode_ = state.mode;
  status_ = state.status;
  return ok();
}

void CfiFlash::encode_state(StateWriter& out, const State& state) {
  out.put<uint8_t>(static_cast<uint8_t>(state.mode));
  out.put<uint8_t>(state.status);
}

CfiFlash::State CfiFlash::decode_state(StateReader& in) {
  State state;
  state.mode = static_cast<Mode>(in.get<uint8_t>());
  state.status = in.get<uint8_t>();
  return state;
}

}  // namespace hostvisor
