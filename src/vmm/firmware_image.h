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
//
// UEFI (OVMF, package ovmf): two flash banks ending at 4 GiB, as on QEMU's
// pc machines: OVMF_CODE_4M.fd at the top, executed in place (guest memory,
// rebuilt from the file at every reset), and below it the VM's own copy of
// OVMF_VARS_4M.fd on a CFI flash device (devices/flash/), which writes
// every change through to that file so variables (boot entries) persist.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace hostvisor {

enum class FirmwareKind { kNone, kBios, kUefi };

// "none", "bios" or "uefi".
Result<FirmwareKind> parse_firmware_kind(const std::string& text);
const char* to_string(FirmwareKind kind);

// --firmware bios|uefi[,vars=PATH]|none.
struct FirmwareOption {
  FirmwareKind kind = FirmwareKind::kNone;
  std::string uefi_vars;  // vars=PATH; empty: not given
};
Result<FirmwareOption> parse_firmware_option(const std::string& text);

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

// Where Debian's ovmf package puts the images of its 4 MiB, SMM-less build.
inline constexpr const char* kOvmfCodePath = "/usr/share/OVMF/OVMF_CODE_4M.fd";
inline constexpr const char* kOvmfVarsTemplatePath = "/usr/share/OVMF/OVMF_VARS_4M.fd";
// That build's flash device: 4 KiB blocks, code and vars filling 4 MiB
// below 4 GiB (its variable store is at 0xFFC00000, fixed at build time).
inline constexpr uint64_t kOvmfFlashBlockSize = 4096;
inline constexpr uint64_t kOvmfFlashSize = 4 * 1024 * 1024;

struct UefiFlash {
  std::vector<uint8_t> code;
  std::vector<uint8_t> vars;
  UniqueFd vars_file;  // open read-write: the flash writes changes through
  // Guest-physical bases: code ends at 4 GiB, vars just below it.
  uint64_t code_address() const;
  uint64_t vars_address() const;
};

// Copies OVMF_VARS_4M.fd to `path`, which must not exist yet.
Result<void> create_uefi_vars(const std::string& path);
// Reads OVMF_CODE_4M.fd and opens the VM's variable store at `vars_path`
// (created from the template if missing). Errors name the package or say
// why the file does not fit (its size must be the template's).
Result<UefiFlash> load_uefi_flash(const std::string& vars_path);

// Copies the image into its ROM region and its tail into the ISA BIOS area;
// both must be in `memory`.
Result<void> place_bios_image(GuestMemory& memory, const std::vector<uint8_t>& image);

}  // namespace hostvisor
