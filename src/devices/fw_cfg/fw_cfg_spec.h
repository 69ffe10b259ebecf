// QEMU's firmware configuration device (fw_cfg), as QEMU documents it in
// docs/specs/fw_cfg: the x86 port layout, the selector keys, the file
// directory and the DMA descriptor. SeaBIOS, OVMF and Linux's qemu_fw_cfg
// driver all read the machine's facts through it.
#pragma once

#include <cstdint>

namespace hostvisor::fw_cfg {

// Offsets from the device's base port (0x510 on x86).
constexpr uint64_t kSelectorOffset = 0;  // 16-bit selector (write)
constexpr uint64_t kDataOffset = 1;      // 8-bit data (read)
constexpr uint64_t kDmaOffset = 4;       // 64-bit big-endian descriptor address: high half at +4, low at +8
constexpr uint64_t kPortCount = 12;

// Selector bits: the write channel (obsolete, ignored) and the
// architecture-local item space.
constexpr uint16_t kWriteChannel = 0x4000;
constexpr uint16_t kArchLocal = 0x8000;

// Keys of the items every machine has.
constexpr uint16_t kSignature = 0x00;  // "QEMU"
constexpr uint16_t kId = 0x01;         // u32 LE feature bits
constexpr uint16_t kUuid = 0x02;       // 16 bytes
constexpr uint16_t kRamSize = 0x03;    // u64 LE
constexpr uint16_t kNoGraphic = 0x04;  // u16 LE
constexpr uint16_t kNbCpus = 0x05;     // u16 LE: CPUs present at boot
constexpr uint16_t kKernelAddr = 0x07;
constexpr uint16_t kKernelSize = 0x08;
constexpr uint16_t kKernelCmdline = 0x09;
constexpr uint16_t kInitrdAddr = 0x0a;
constexpr uint16_t kInitrdSize = 0x0b;
constexpr uint16_t kBootDevice = 0x0c;
constexpr uint16_t kNuma = 0x0d;
constexpr uint16_t kBootMenu = 0x0e;
constexpr uint16_t kMaxCpus = 0x0f;  // u16 LE: the most CPUs the machine could have
constexpr uint16_t kKernelEntry = 0x10;
constexpr uint16_t kKernelData = 0x11;
constexpr uint16_t kInitrdData = 0x12;
constexpr uint16_t kCmdlineAddr = 0x13;
constexpr uint16_t kCmdlineSize = 0x14;
constexpr uint16_t kCmdlineData = 0x15;
constexpr uint16_t kSetupAddr = 0x16;
constexpr uint16_t kSetupSize = 0x17;
constexpr uint16_t kSetupData = 0x18;
constexpr uint16_t kFileDir = 0x19;  // the file directory
constexpr uint16_t kFileFirst = 0x20;
// Files take keys kFileFirst.. kFileFirst + kMaxFiles - 1.
constexpr uint16_t kMaxFiles = 0x1000;

// ID bits.
constexpr uint32_t kIdTraditional = 1u << 0;  // the port interface
constexpr uint32_t kIdDma = 1u << 1;          // the DMA interface

// A file directory entry: u32 BE size, u16 BE select, u16 reserved, then
// the NUL-terminated name. The directory starts with a u32 BE count.
constexpr size_t kFileNameSize = 56;
constexpr size_t kFileEntrySize = 4 + 2 + 2 + kFileNameSize;

// The DMA descriptor the guest points the DMA register at: u32 BE control,
// u32 BE length, u64 BE guest address. The device clears control when done
// or leaves kDmaError set.
constexpr uint64_t kDmaDescriptorSize = 16;
constexpr uint32_t kDmaError = 1u << 0;
constexpr uint32_t kDmaRead = 1u << 1;
constexpr uint32_t kDmaSkip = 1u << 2;
constexpr uint32_t kDmaSelect = 1u << 3;  // selector in bits 16-31
constexpr uint32_t kDmaWrite = 1u << 4;

// What a read of the DMA register returns, as bytes in port order.
constexpr char kDmaSignature[8] = {'Q', 'E', 'M', 'U', ' ', 'C', 'F', 'G'};

}  // namespace hostvisor::fw_cfg
