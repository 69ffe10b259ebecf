#include "vmm/firmware_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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

Result<FirmwareOption> parse_firmware_option(const std::string& text) {
  const size_t comma = text.find(',');
  FirmwareOption option;
  option.kind = HV_TRY(parse_firmware_kind(text.substr(0, comma)));
  if (comma == std::string::npos) return option;
  const std::string rest = text.substr(comma + 1);
  if (option.kind != FirmwareKind::kUefi)
    return Error(ErrorCode::kInvalidArgument, "--firmware " + text + ": only uefi takes options (vars=PATH)");
  if (rest.rfind("vars=", 0) != 0 || rest.size() == 5 || rest.find(',') != std::string::npos)
    return Error(ErrorCode::kInvalidArgument,
                 "--firmware " + text + ": the one option of uefi is vars=PATH (the VM's variable store)");
  option.uefi_vars = rest.substr(5);
  return option;
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

uint64_t UefiFlash::code_address() const { return arch::kHighRamStart - code.size(); }
uint64_t UefiFlash::vars_address() const { return code_address() - vars.size(); }

namespace {
Error missing_ovmf(const std::string& path, const Error& error) {
  return Error(ErrorCode::kNotFound, path + ": " + error.message() +
                                         "; --firmware uefi runs Debian's OVMF from the ovmf package "
                                         "(apt-get install ovmf)");
}
}  // namespace

Result<void> create_uefi_vars(const std::string& path) {
  auto template_vars = read_file(kOvmfVarsTemplatePath);
  if (!template_vars) return missing_ovmf(kOvmfVarsTemplatePath, template_vars.error());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Error(ErrorCode::kIo, "--firmware uefi,vars=" + path + ": " + std::strerror(errno));
  UniqueFd file(fd);
  auto written = write_fully(fd, *template_vars);
  if (!written) {
    ::unlink(path.c_str());
    return std::move(written).error().with_context("--firmware uefi,vars=" + path);
  }
  return ok();
}

Result<UefiFlash> load_uefi_flash(const std::string& vars_path) {
  auto code = read_file(kOvmfCodePath);
  if (!code) return missing_ovmf(kOvmfCodePath, code.error());
  struct stat template_stat {};
  if (::stat(kOvmfVarsTemplatePath, &template_stat) != 0)
    return missing_ovmf(kOvmfVarsTemplatePath, Error(ErrorCode::kNotFound, std::strerror(errno)));
  const uint64_t vars_size = static_cast<uint64_t>(template_stat.st_size);
  if (code->size() + vars_size != kOvmfFlashSize || code->size() % kOvmfFlashBlockSize != 0 ||
      vars_size % kOvmfFlashBlockSize != 0)
    return Error(ErrorCode::kInvalidArgument,
                 std::string(kOvmfCodePath) + " and " + kOvmfVarsTemplatePath + " are " +
                     std::to_string(code->size()) + " and " + std::to_string(vars_size) +
                     " bytes, not OVMF's 4 MiB flash layout; reinstall Debian's ovmf package");

  if (::access(vars_path.c_str(), F_OK) != 0) HV_TRY(create_uefi_vars(vars_path));
  const std::string what = "--firmware uefi,vars=" + vars_path;
  const int fd = ::open(vars_path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Error(ErrorCode::kIo, what + ": " + std::strerror(errno));
  UefiFlash flash;
  flash.vars_file = UniqueFd(fd);
  struct stat vars_stat {};
  if (::fstat(fd, &vars_stat) != 0) return Error(ErrorCode::kIo, what + ": " + std::strerror(errno));
  if (static_cast<uint64_t>(vars_stat.st_size) != vars_size)
    return Error(ErrorCode::kInvalidArgument,
                 what + " is " + std::to_string(vars_stat.st_size) + " bytes; OVMF_CODE_4M.fd needs a " +
                     std::to_string(vars_size) + "-byte variable store (a copy of " + kOvmfVarsTemplatePath + ")");
  flash.vars.resize(vars_size);
  if (::pread(fd, flash.vars.data(), vars_size, 0) != static_cast<ssize_t>(vars_size))
    return Error(ErrorCode::kIo, what + ": cannot read it");
  flash.code.assign(code->begin(), code->end());
  return flash;
}

Result<void> place_bios_image(GuestMemory& memory, const std::vector<uint8_t>& image) {
  HV_TRY(memory.write(firmware_rom_region(image.size()).start, image));
  const std::span<const uint8_t> tail = std::span(image).last(kIsaBiosSize);
  return memory.write(GuestAddress(arch::kLegacyAreaEnd - kIsaBiosSize), tail);
}

}  // namespace hostvisor
