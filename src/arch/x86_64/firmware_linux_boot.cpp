#include "arch/x86_64/firmware_linux_boot.h"

#include <cstring>

#include "arch/x86_64/bzimage.h"

namespace hostvisor::arch {

namespace {

Error bad(ErrorCode code, const std::string& what) { return Error(code, "--kernel with --firmware: " + what); }

uint16_t get16(std::span<const uint8_t> b, uint64_t at) { return static_cast<uint16_t>(b[at] | b[at + 1] << 8); }
uint32_t get32(std::span<const uint8_t> b, uint64_t at) { return get16(b, at) | uint32_t{get16(b, at + 2)} << 16; }
void put16(std::span<uint8_t> b, uint64_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v);
  b[at + 1] = static_cast<uint8_t>(v >> 8);
}
void put32(std::span<uint8_t> b, uint64_t at, uint32_t v) {
  put16(b, at, static_cast<uint16_t>(v));
  put16(b, at + 2, static_cast<uint16_t>(v >> 16));
}

// The boot protocol's loader ID for QEMU (type_of_loader 0xB0): what the
// kernel reports in /sys/kernel/boot_params, as it would under QEMU.
constexpr uint8_t kLoaderTypeQemu = 0xb0;
// Before 2.03 the header has no initrd_addr_max; the protocol says 0x37FFFFFF.
constexpr uint32_t kDefaultInitrdAddrMax = 0x37ffffff;

}  // namespace

Result<FirmwareLinuxBoot> prepare_firmware_linux_boot(std::span<const uint8_t> file, std::span<const uint8_t> initrd,
                                                      const std::string& cmdline, const MemoryLayout& layout) {
  using namespace bootparam;
  if (!is_bzimage(file))
    return bad(ErrorCode::kUnsupported,
               "firmware boots only a Linux bzImage this way (no boot-protocol header found); drop --firmware to "
               "boot ELF or multiboot kernels directly");
  const uint16_t version = get16(file, kVersion);
  if (version < 0x0202 || !(file[kLoadFlags] & kLoadedHigh))
    return bad(ErrorCode::kUnsupported, "the kernel's boot protocol is older than 2.02 or it does not load high");
  const uint64_t setup_sects = file[kSetupSects] == 0 ? kDefaultSetupSects : file[kSetupSects];
  const uint64_t setup_size = (setup_sects + 1) * kSectorSize;
  if (setup_size >= file.size()) return bad(ErrorCode::kCorrupt, "the setup sectors fill the whole file");
  // The setup code, its stack and heap run below the command line.
  if (setup_size > kFirmwareCmdlineAddress - kFirmwareSetupAddress)
    return bad(ErrorCode::kCorrupt, "the setup code is " + std::to_string(setup_size) + " bytes, more than fits");
  uint32_t cmdline_max = version >= 0x0206 ? get32(file, kCmdlineSize) : 255;
  if (cmdline_max > kCmdlineMaxSize - 1) cmdline_max = static_cast<uint32_t>(kCmdlineMaxSize - 1);
  if (cmdline.size() > cmdline_max)
    return bad(ErrorCode::kInvalidArgument, "the command line is " + std::to_string(cmdline.size()) +
                                                " bytes, the kernel takes at most " + std::to_string(cmdline_max));
  if (std::memchr(cmdline.data(), '\0', cmdline.size()) != nullptr)
    return bad(ErrorCode::kInvalidArgument, "the command line contains a NUL byte");

  FirmwareLinuxBoot boot;
  boot.setup.assign(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(setup_size));
  boot.kernel.assign(file.begin() + static_cast<std::ptrdiff_t>(setup_size), file.end());
  boot.initrd.assign(initrd.begin(), initrd.end());
  boot.cmdline = cmdline;

  const uint64_t kernel_end = kFirmwareKernelAddress + boot.kernel.size();
  if (kernel_end > layout.low_ram_end)
    return bad(ErrorCode::kOutOfRange, "the kernel does not fit in the guest's RAM; give more --memory");
  if (!initrd.empty()) {
    uint64_t limit = version >= 0x0203 ? get32(file, kInitrdAddrMax) : kDefaultInitrdAddrMax;
    if (layout.low_ram_end < kFirmwareTopReserve)
      return bad(ErrorCode::kOutOfRange, "too little RAM below 4 GiB for the initrd; give more --memory");
    if (limit > layout.low_ram_end - kFirmwareTopReserve - 1) limit = layout.low_ram_end - kFirmwareTopReserve - 1;
    // Highest page-aligned place below the limit, clear of the kernel
    // (the kernel decompresses in place above its load address).
    if (initrd.size() > limit + 1)
      return bad(ErrorCode::kOutOfRange, "the initrd does not fit in the guest's RAM; give more --memory");
    boot.initrd_address = (limit + 1 - initrd.size()) & ~(kPageSize - 1);
    if (boot.initrd_address < kernel_end)
      return bad(ErrorCode::kOutOfRange, "the kernel and the initrd do not both fit; give more --memory");
  }

  const std::span<uint8_t> header(boot.setup);
  header[kTypeOfLoader] = kLoaderTypeQemu;
  // The heap ends where the command line starts, 0x200 below it for the
  // stack, counted from the setup segment's start.
  put16(header, kHeapEndPtr, static_cast<uint16_t>(kFirmwareCmdlineAddress - kFirmwareSetupAddress - 0x200));
  header[kLoadFlags] |= kCanUseHeap;
  put32(header, kCmdLinePtr, static_cast<uint32_t>(kFirmwareCmdlineAddress));
  put32(header, kRamdiskImage, static_cast<uint32_t>(boot.initrd_address));
  put32(header, kRamdiskSize, static_cast<uint32_t>(boot.initrd.size()));
  return boot;
}

}  // namespace hostvisor::arch
