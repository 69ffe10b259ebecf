#include "vmm/firmware_image.h"

#include <span>

#include "arch/x86_64/layout.h"
#include "base/fd.h"

namespace hostvisor {

Result<FirmwareKind> parse_firmware_kind(const std::string& text) {
  if (text == "none") return FirmwareKind::kNone;
  if (text == "bios") return FirmwareKind::kBios;
  if (text == "uefi") return FirmwareKind::kUefi;
  return Error(ErrorCode::kInvalidArgument, "--firmware " + text + ": must be bios, uefi or none");
}

const char* to_string(FirmwareKind kind) {
  switch (kind) {
    case FirmwareKind::kNone: return "none";
    case FirmwareKind::kBios: return "bios";
    case FirmwareKind::kUefi: return "uefi";
  }
  return "?";
}

Result<std::vector<uint8_t>> load_bios_image(const std::string& path, const std::string& package) {
  auto read = read_file(path);
  if (!read)
    return Error(ErrorCode::kNotFound, path + ": " + read.error().message() + "; the firmware comes from Debian's " +
                                           package + " package (apt-get install " + package + ")");
  const uint64_t size = read->size();
  if (size < kIsaBiosSize || size > kMaxFirmwareRomSize || size % (64 * 1024) != 0)
    return Error(ErrorCode::kInvalidArgument,
                 path + " is " + std::to_string(size) +
                     " bytes, not a BIOS image (a multiple of 64 KiB between 128 KiB and 16 MiB); reinstall Debian's " +
                     package + " package");
  return std::vector<uint8_t>(read->begin(), read->end());
}

MemoryRegionSpec firmware_rom_region(uint64_t size) {
  return MemoryRegionSpec{GuestAddress(arch::kHighRamStart - size), size};
}

Result<void> place_bios_image(GuestMemory& memory, const std::vector<uint8_t>& image) {
  HV_TRY(memory.write(firmware_rom_region(image.size()).start, image));
  const std::span<const uint8_t> tail = std::span(image).last(kIsaBiosSize);
  return memory.write(GuestAddress(arch::kLegacyAreaEnd - kIsaBiosSize), tail);
}

}  // namespace hostvisor
