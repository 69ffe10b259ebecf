// The kernel loader entry point: detects the format of a kernel file and
// loads it with the matching boot protocol, leaving guest memory ready and
// returning the boot vCPU's state. Backend-neutral: the result is the same
// for KVM and the software CPU.
#pragma once

#include <optional>
#include <span>

#include "arch/x86_64/kernel_image.h"
#include "arch/x86_64/layout.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace hostvisor::arch {

// Linux bzImage ("HdrS" + 0xAA55) first, then multiboot v1 (a valid header in
// the first 8 KiB; an ELF64 whose header lacks the a.out kludge counts as
// ELF64, since multiboot v1 loads only ELF32 by program headers), then ELF64
// (kElf64 here even when it carries a PVH note: that is decided on loading).
std::optional<KernelFormat> detect_kernel_format(std::span<const uint8_t> kernel);

// memory must hold layout.regions(). On an unrecognised file the error is one
// line naming the formats hostvisor boots; callers add the file name with
// Error::with_context.
Result<BootSetup> load_kernel(GuestMemory& memory, const MemoryLayout& layout, const KernelImage& image);

}  // namespace hostvisor::arch
