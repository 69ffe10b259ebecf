// What a kernel loader takes (the kernel file, an optional initrd and the
// command line) and what it gives back (the boot vCPU's state).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "hv/cpu_state.h"

namespace hostvisor::arch {

struct KernelImage {
  std::span<const uint8_t> kernel;  // the whole kernel file
  std::span<const uint8_t> initrd;  // empty: no initrd
  std::string cmdline;
  // The files' names as the user gave them. Multiboot hands them over as
  // GRUB and QEMU do: the kernel's command line starts with the kernel's
  // name, and the module's string is the initrd's name.
  std::string kernel_name = {};
  std::string initrd_name = {};
  // Guest address of the ACPI RSDP when the machine wrote ACPI tables, handed
  // to kernels whose protocol has a field for it (Linux boot protocol 2.14+,
  // PVH); 0: none given, the guest scans 0xE0000-0xFFFFF as on a PC.
  uint64_t acpi_rsdp = 0;
};

enum class KernelFormat {
  kLinuxBzImage,  // Linux boot protocol, entered at the 64-bit entry point
  kElf64,         // ELF64 entered at e_entry in long mode
  kPvh,           // ELF64 with a Xen PHYS32_ENTRY note, entered per the PVH ABI
  kMultiboot,     // multiboot v1 (a.out kludge or ELF32)
};

const char* kernel_format_name(KernelFormat format);

struct BootSetup {
  KernelFormat format = KernelFormat::kLinuxBzImage;
  Registers regs;
  SystemRegisters sregs;
  std::string description;  // one line for the log: format, addresses, sizes
};

}  // namespace hostvisor::arch
