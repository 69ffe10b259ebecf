#include "arch/x86_64/kernel_loader.h"

#include "arch/x86_64/boot_payload.h"
#include "arch/x86_64/bzimage.h"
#include "arch/x86_64/elf_kernel.h"
#include "arch/x86_64/elf_reader.h"
#include "arch/x86_64/multiboot.h"

namespace hostvisor::arch {

const char* kernel_format_name(KernelFormat format) {
  switch (format) {
    case KernelFormat::kLinuxBzImage: return "Linux bzImage";
    case KernelFormat::kElf64: return "ELF64";
    case KernelFormat::kPvh: return "PVH ELF64";
    case KernelFormat::kMultiboot: return "multiboot v1";
  }
  return "unknown";
}

static bool is_elf64(std::span<const uint8_t> kernel) {
  return has_elf_magic(kernel) && kernel.size() > 4 && kernel[4] == 2;
}

std::optional<KernelFormat> detect_kernel_format(std::span<const uint8_t> kernel) {
  if (is_bzimage(kernel)) return KernelFormat::kLinuxBzImage;
  const auto header = find_multiboot_header(kernel);
  if (header && header->checksum_ok && ((header->flags & multiboot::kHeaderAoutKludge) != 0 || !is_elf64(kernel)))
    return KernelFormat::kMultiboot;
  if (is_elf64(kernel)) return KernelFormat::kElf64;
  return std::nullopt;
}

Result<BootSetup> load_kernel(GuestMemory& memory, const MemoryLayout& layout, const KernelImage& image) {
  const std::optional<KernelFormat> format = detect_kernel_format(image.kernel);
  if (!format) {
    std::string hint;
    if (image.kernel.empty()) {
      hint = " (the file is empty)";
    } else if (const auto header = find_multiboot_header(image.kernel); header && !header->checksum_ok) {
      hint = " (the multiboot header at offset " + hex(header->offset) + " has a bad checksum)";
    } else if (has_elf_magic(image.kernel)) {
      hint = " (this is an ELF32 file without a multiboot header)";
    }
    return Error(ErrorCode::kUnsupported,
                 "not a kernel hostvisor can boot: expected a Linux bzImage, an ELF64 image (with or without a PVH "
                 "note) or a multiboot v1 image" +
                     hint);
  }
  switch (*format) {
    case KernelFormat::kLinuxBzImage: return load_bzimage(memory, layout, image);
    case KernelFormat::kMultiboot: return load_multiboot(memory, layout, image);
    case KernelFormat::kElf64:
    case KernelFormat::kPvh: return load_elf_kernel(memory, layout, image);
  }
  return Error(ErrorCode::kInternal, "unhandled kernel format");
}

}  // namespace hostvisor::arch
