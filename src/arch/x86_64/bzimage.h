// Linux bzImage kernels by the x86 boot protocol (Documentation/arch/x86/
// boot.rst), entered at the 64-bit entry point: protocol 2.12 or later with
// XLF_KERNEL_64. The setup header is copied into a zero page (struct
// boot_params) at kZeroPageAddress, which RSI points to at entry.
#pragma once

#include <cstdint>
#include <span>

#include "arch/x86_64/kernel_image.h"
#include "arch/x86_64/layout.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace hostvisor::arch {

// Offsets in the kernel file's first sector and, identically, in boot_params.
namespace bootparam {
constexpr uint64_t kAcpiRsdpAddr = 0x070;       // u64
constexpr uint64_t kExtRamdiskImage = 0x0c0;    // u32, high half of ramdisk_image
constexpr uint64_t kExtRamdiskSize = 0x0c4;     // u32
constexpr uint64_t kExtCmdLinePtr = 0x0c8;      // u32
constexpr uint64_t kE820Entries = 0x1e8;        // u8
constexpr uint64_t kSetupHeader = 0x1f1;        // start of struct setup_header
constexpr uint64_t kSetupSects = 0x1f1;         // u8
constexpr uint64_t kBootFlag = 0x1fe;           // u16 0xAA55
constexpr uint64_t kJump = 0x200;               // u16: short jump; its offset byte gives the header end
constexpr uint64_t kHeaderMagic = 0x202;        // u32 "HdrS"
constexpr uint64_t kVersion = 0x206;            // u16
constexpr uint64_t kTypeOfLoader = 0x210;       // u8
constexpr uint64_t kLoadFlags = 0x211;          // u8
constexpr uint64_t kCode32Start = 0x214;        // u32
constexpr uint64_t kRamdiskImage = 0x218;       // u32
constexpr uint64_t kRamdiskSize = 0x21c;        // u32
constexpr uint64_t kHeapEndPtr = 0x224;         // u16
constexpr uint64_t kCmdLinePtr = 0x228;         // u32
constexpr uint64_t kInitrdAddrMax = 0x22c;      // u32
constexpr uint64_t kKernelAlignment = 0x230;    // u32
constexpr uint64_t kRelocatableKernel = 0x234;  // u8
constexpr uint64_t kXLoadFlags = 0x236;         // u16
constexpr uint64_t kCmdlineSize = 0x238;        // u32
constexpr uint64_t kHardwareSubarch = 0x23c;    // u32
constexpr uint64_t kSetupData = 0x250;          // u64
constexpr uint64_t kPrefAddress = 0x258;        // u64
constexpr uint64_t kInitSize = 0x260;           // u32
constexpr uint64_t kHeaderMinEnd = 0x264;       // through init_size: all a 2.12 header must have
constexpr uint64_t kHeaderMaxEnd = 0x290;       // the setup header area of boot_params ends here
constexpr uint64_t kE820Table = 0x2d0;          // 128 x {u64 addr, u64 size, u32 type}
constexpr uint64_t kE820MaxEntries = 128;
constexpr uint64_t kZeroPageSize = 0x1000;

constexpr uint16_t kBootFlagValue = 0xaa55;
constexpr uint32_t kHeaderMagicValue = 0x53726448;  // "HdrS"
constexpr uint8_t kLoadedHigh = 1 << 0;
constexpr uint8_t kCanUseHeap = 1 << 7;
constexpr uint16_t kXlfKernel64 = 1 << 0;
constexpr uint8_t kLoaderTypeUndefined = 0xff;
constexpr uint16_t kMinProtocol64Bit = 0x020c;
constexpr uint16_t kMinProtocolAcpiRsdp = 0x020e;  // acpi_rsdp_addr is read from 2.14
constexpr uint64_t kDefaultSetupSects = 4;         // setup_sects 0 means 4
constexpr uint64_t kSectorSize = 512;
constexpr uint64_t kEntry64Offset = 0x200;  // 64-bit entry = load address + 0x200
}  // namespace bootparam

// True when the file carries a boot-protocol header ("HdrS" at 0x202 and the
// 0xAA55 boot flag at 0x1FE).
bool is_bzimage(std::span<const uint8_t> file);

Result<BootSetup> load_bzimage(GuestMemory& memory, const MemoryLayout& layout, const KernelImage& image);

}  // namespace hostvisor::arch
