// The firmware a machine runs before its OS (--firmware): which one, where
// Debian installs it, and how it is laid into guest memory.
//
// BIOS (SeaBIOS, package seabios): the image is ROM ending at 4 GiB, where
// the CPU's reset vector fetches (0xFFFFFFF0), and its last 128 KiB also
// appear at 0xE0000-0xFFFFF, the ISA BIOS area real-mode code jumps to. The
// low copy is ordinary RAM (the legacy area is always RAM here; the PAM
// registers SeaBIOS programs only read back), so SeaBIOS can write its data
// there as it does after opening PAM on QEMU; a reboot restores it from the
// pristine high copy (SeaBIOS does that itself before it resets).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "memory/guest_memory.h"

namespace hostvisor {

enum class FirmwareKind { kNone, kBios, kUefi };

// "none", "bios" or "uefi".
Result<FirmwareKind> parse_firmware_kind(const std::string& text);
const char* to_string(FirmwareKind kind);

// Where Debian's seabios package puts the image QEMU's PC machines use.
inline constexpr const char* kSeabiosPath = "/usr/share/seabios/bios-256k.bin";
// How much of the image the ISA BIOS area below 1 MiB shows.
inline constexpr uint64_t kIsaBiosSize = 128 * 1024;
// Largest firmware ROM accepted: far more than any PC BIOS, and it must stay
// clear of the chipset registers below (the LAPIC ends at 0xFEF00000).
inline constexpr uint64_t kMaxFirmwareRomSize = 16 * 1024 * 1024;

// Reads a BIOS image (`path`, from the package `package`): a whole number of
// 64 KiB blocks, at least the ISA area's 128 KiB, at most
// kMaxFirmwareRomSize. The error names the package to install.
Result<std::vector<uint8_t>> load_bios_image(const std::string& path, const std::string& package);

// The guest-physical range the ROM of `size` bytes occupies (ending at 4 GiB).
MemoryRegionSpec firmware_rom_region(uint64_t size);

// Copies the image into its ROM region and its tail into the ISA BIOS area;
// both must be in `memory`.
Result<void> place_bios_image(GuestMemory& memory, const std::vector<uint8_t>& image);

}  // namespace hostvisor
