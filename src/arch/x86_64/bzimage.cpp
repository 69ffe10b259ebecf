#include "arch/x86_64/bzimage.h"

#include <array>
#include <cstring>

#include "arch/x86_64/boot_cpu.h"
#include "arch/x86_64/boot_payload.h"
#include "arch/x86_64/e820.h"
#include "base/bytes.h"

namespace hostvisor::arch {

using namespace bootparam;

namespace {

Error bad(ErrorCode code, const std::string& what) { return Error(code, "Linux bzImage: " + what); }

std::string protocol_name(uint16_t version) {
  return std::to_string(version >> 8) + "." + (((version & 0xff) < 10) ? "0" : "") + std::to_string(version & 0xff);
}

// align_up that reports overflow instead of wrapping.
bool align_up(uint64_t value, uint64_t alignment, uint64_t& out) {
  if (value > UINT64_MAX - (alignment - 1)) return false;
  out = (value + alignment - 1) & ~(alignment - 1);
  return true;
}

struct Placement64 {
  uint64_t load_address;  // where the protected-mode kernel is copied
  uint64_t reserved_end;  // end of the memory the kernel claims before it reads e820
};

// Where the protected-mode kernel goes: for a relocatable kernel its preferred
// address if that fits, else the lowest kernel_alignment-aligned address from
// 1 MiB; a non-relocatable kernel at 1 MiB, and it will run at pref_address.
Result<Placement64> place_kernel(const std::vector<E820Entry>& map, std::span<const uint8_t> file,
                                 uint64_t payload_size) {
  const uint64_t init_size = load_at<uint32_t>(file, kInitSize);
  const uint64_t need = init_size > payload_size ? init_size : payload_size;
  const uint64_t pref = load_at<uint64_t>(file, kPrefAddress);
  const bool relocatable = file[kRelocatableKernel] != 0;
  if (relocatable) {
    uint64_t alignment = load_at<uint32_t>(file, kKernelAlignment);
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > kGiB)
      return bad(ErrorCode::kCorrupt, "kernel_alignment " + hex(alignment) + " is not a power of two up to 1 GiB");
    if (alignment < kPageSize) alignment = kPageSize;
    // The kernel runs from the identity map, so all of it stays below 4 GiB.
    auto fits = [&](uint64_t address) {
      return address < kIdentityMappedSize && need <= kIdentityMappedSize - address &&
             is_usable_ram(map, address, need);
    };
    for (uint64_t candidate : {pref, kHighMemoryStart}) {
      if (candidate < kHighMemoryStart) continue;
      uint64_t address;
      if (!align_up(candidate, alignment, address)) continue;
      if (fits(address)) return Placement64{address, address + need};
    }
    // Anywhere else in RAM below 4 GiB, aligned, as low as possible.
    for (const auto& e : map) {
      if (e.type != E820Type::kRam || e.end() <= kHighMemoryStart || e.address >= kIdentityMappedSize) continue;
      uint64_t address;
      if (!align_up(e.address > kHighMemoryStart ? e.address : kHighMemoryStart, alignment, address)) continue;
      if (fits(address)) return Placement64{address, address + need};
    }
    return bad(ErrorCode::kOutOfRange, "the kernel needs " + std::to_string(need) + " bytes (init_size) at a " +
                                           hex(alignment) +
                                           "-aligned address in RAM from 1 MiB; give the VM more memory (--memory)");
  }
  const uint64_t runtime = pref != 0 ? pref : kHighMemoryStart;
  if (runtime < kHighMemoryStart)
    return bad(ErrorCode::kCorrupt, "this non-relocatable kernel wants to run at " + hex(runtime) +
                                        ", below 1 MiB where the boot structures are");
  if (!is_usable_ram(map, kHighMemoryStart, payload_size) || !is_usable_ram(map, runtime, init_size) ||
      runtime >= kIdentityMappedSize || init_size > kIdentityMappedSize - runtime)
    return bad(ErrorCode::kOutOfRange, "this non-relocatable kernel needs RAM at [" + hex(kHighMemoryStart) + ", +" +
                                           hex(payload_size) + ") and [" + hex(runtime) + ", +" + hex(init_size) +
                                           "): give the VM more memory (--memory)");
  const uint64_t end_loaded = kHighMemoryStart + payload_size;
  const uint64_t end_runtime = runtime + init_size;
  return Placement64{kHighMemoryStart, end_loaded > end_runtime ? end_loaded : end_runtime};
}

void fill_e820(std::span<uint8_t> zero_page, const std::vector<E820Entry>& map) {
  const size_t count = map.size() < kE820MaxEntries ? map.size() : kE820MaxEntries;
  zero_page[kE820Entries] = static_cast<uint8_t>(count);
  for (size_t i = 0; i < count; ++i) {
    const uint64_t at = kE820Table + i * 20;
    store_at<uint64_t>(zero_page, at, map[i].address);
    store_at<uint64_t>(zero_page, at + 8, map[i].size);
    store_at<uint32_t>(zero_page, at + 16, static_cast<uint32_t>(map[i].type));
  }
}

}  // namespace

bool is_bzimage(std::span<const uint8_t> file) {
  return file.size() >= kHeaderMagic + 4 && load_at<uint16_t>(file, kBootFlag) == kBootFlagValue &&
         load_at<uint32_t>(file, kHeaderMagic) == kHeaderMagicValue;
}

Result<BootSetup> load_bzimage(GuestMemory& memory, const MemoryLayout& layout, const KernelImage& image) {
  const std::span<const uint8_t> file = image.kernel;
  if (!is_bzimage(file))
    return bad(ErrorCode::kCorrupt, "no boot-protocol header (\"HdrS\" at 0x202 with boot flag 0xAA55 at 0x1FE)");
  if (file.size() < kHeaderMinEnd)
    return bad(ErrorCode::kCorrupt, "file is " + std::to_string(file.size()) + " bytes, shorter than its setup header");
  const uint16_t version = load_at<uint16_t>(file, kVersion);
  if (version < kMinProtocol64Bit)
    return bad(ErrorCode::kUnsupported, "boot protocol " + protocol_name(version) +
                                            " has no 64-bit entry point (2.12 or later is needed: Linux 3.8+)");
  if ((load_at<uint16_t>(file, kXLoadFlags) & kXlfKernel64) == 0)
    return bad(ErrorCode::kUnsupported,
               "kernel has no 64-bit entry point (XLF_KERNEL_64 not set in xloadflags): boot a 64-bit kernel");
  if ((file[kLoadFlags] & kLoadedHigh) == 0)
    return bad(ErrorCode::kUnsupported, "a zImage (loaded below 1 MiB) cannot be booted: use a bzImage");

  const uint64_t setup_sects = file[kSetupSects] == 0 ? kDefaultSetupSects : file[kSetupSects];
  const uint64_t setup_size = (setup_sects + 1) * kSectorSize;
  if (setup_size >= file.size())
    return bad(ErrorCode::kCorrupt, "setup_sects " + std::to_string(setup_sects) + " puts the kernel at offset " +
                                        hex(setup_size) + " but the file is only " + std::to_string(file.size()) +
                                        " bytes (truncated file?)");
  const std::span<const uint8_t> payload = file.subspan(setup_size);
  if (payload.size() <= kEntry64Offset)
    return bad(ErrorCode::kCorrupt, "the protected-mode kernel is only " + std::to_string(payload.size()) +
                                        " bytes, too small to hold the 64-bit entry point at offset 0x200");

  const std::vector<E820Entry> map = e820_map(layout);
  const Placement64 kernel = HV_TRY(place_kernel(map, file, payload.size()));

  uint64_t cmdline_max = load_at<uint32_t>(file, kCmdlineSize);
  if (cmdline_max == 0) cmdline_max = 255;  // the limit before the field existed
  const uint64_t cmdline = HV_TRY(write_cmdline(memory, image.cmdline, cmdline_max));

  uint64_t initrd_address = 0;
  if (!image.initrd.empty()) {
    const uint64_t initrd_addr_max = load_at<uint32_t>(file, kInitrdAddrMax);
    uint64_t limit = initrd_addr_max == 0 ? 0x38000000 : initrd_addr_max + 1;
    if (limit > layout.low_ram_end) limit = layout.low_ram_end;
    initrd_address = HV_TRY(load_initrd(memory, map, image.initrd, kernel.reserved_end, limit, Placement::kHighest));
  }

  // The zero page: the file's setup header at its boot_params offset, then
  // the fields a boot loader fills in.
  std::array<uint8_t, kZeroPageSize> zero_page{};
  uint64_t header_end = kJump + 2 + file[kJump + 1];
  if (header_end < kHeaderMinEnd) header_end = kHeaderMinEnd;
  if (header_end > kHeaderMaxEnd) header_end = kHeaderMaxEnd;
  std::memcpy(zero_page.data() + kSetupHeader, file.data() + kSetupHeader, header_end - kSetupHeader);
  std::span<uint8_t> zp(zero_page);
  zp[kTypeOfLoader] = kLoaderTypeUndefined;
  zp[kLoadFlags] = static_cast<uint8_t>(zp[kLoadFlags] | kCanUseHeap);
  store_at<uint16_t>(zp, kHeapEndPtr, 0xfe00);  // only the 16-bit setup code (skipped here) uses the heap
  store_at<uint32_t>(zp, kCode32Start, static_cast<uint32_t>(kernel.load_address));
  store_at<uint32_t>(zp, kCmdLinePtr, static_cast<uint32_t>(cmdline));
  store_at<uint32_t>(zp, kExtCmdLinePtr, static_cast<uint32_t>(cmdline >> 32));
  store_at<uint32_t>(zp, kRamdiskImage, static_cast<uint32_t>(initrd_address));
  store_at<uint32_t>(zp, kExtRamdiskImage, static_cast<uint32_t>(initrd_address >> 32));
  store_at<uint32_t>(zp, kRamdiskSize, static_cast<uint32_t>(image.initrd.size()));
  store_at<uint32_t>(zp, kExtRamdiskSize, static_cast<uint32_t>(uint64_t{image.initrd.size()} >> 32));
  store_at<uint32_t>(zp, kHardwareSubarch, 0);  // a plain PC
  store_at<uint64_t>(zp, kSetupData, 0);        // no setup_data list: never pass the file's value on
  store_at<uint64_t>(zp, kAcpiRsdpAddr, version >= kMinProtocolAcpiRsdp ? image.acpi_rsdp : 0);
  fill_e820(zp, map);

  HV_TRY(memory.write(GuestAddress(kernel.load_address), payload));
  HV_TRY(memory.write(GuestAddress(kZeroPageAddress), std::span<const uint8_t>(zero_page)));
  HV_TRY(write_boot_gdt(memory));
  HV_TRY(write_identity_page_tables(memory));

  BootCpuState cpu = long_mode_boot_state(kernel.load_address + kEntry64Offset);
  cpu.regs.rsi = kZeroPageAddress;
  BootSetup setup;
  setup.format = KernelFormat::kLinuxBzImage;
  setup.regs = cpu.regs;
  setup.sregs = cpu.sregs;
  setup.description =
      "Linux bzImage (boot protocol " + protocol_name(version) + "), " + std::to_string(payload.size()) +
      " bytes loaded at " + hex(kernel.load_address) + ", entry " + hex(cpu.regs.rip) +
      (image.initrd.empty() ? std::string()
                            : ", initrd " + std::to_string(image.initrd.size()) + " bytes at " + hex(initrd_address));
  return setup;
}

}  // namespace hostvisor::arch
