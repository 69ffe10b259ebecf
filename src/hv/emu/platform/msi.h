// Decoding of x86 message-signalled interrupts (PCI MSI / MSI-X): the write
// of `data` to `address` in the 0xFEExxxxx window becomes an ApicMessage.
//
// Address: bits 31:20 = 0xFEE, 19:12 destination id, 3 redirection hint,
// 2 destination mode (1 = logical). Data: 7:0 vector, 10:8 delivery mode,
// 14 level (assert), 15 trigger mode (1 = level).
#pragma once

#include <cstdint>

#include "base/result.h"
#include "hv/emu/platform/apic_message.h"

namespace hostvisor::emu {

constexpr uint64_t kMsiAddressBase = 0xfee00000;

// Fails (kGuest) when the address is outside 0xFEE00000-0xFEEFFFFF or the
// delivery mode is reserved (3) or Startup (6), which MSI cannot send. With
// the redirection hint set, fixed delivery is treated as lowest priority
// (and lowest priority delivers to the lowest-numbered matching APIC).
Result<ApicMessage> decode_msi(uint64_t address, uint32_t data);

}  // namespace hostvisor::emu
