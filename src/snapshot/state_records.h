// The state file: tagged, versioned records, one per component ("vcpu.0",
// "irqchip", "serial", "pci.00:03.0"...). Each is framed as
//
//   u32 magic "HVRC" | u32 tag length | tag | u32 version | u32 payload length
//   | payload | u32 CRC-32C of everything before it in the record
//
// The payload is the component's State as it encodes it (state_codec.h);
// `version` is that component's State version, so a component can read an
// older layout of its own.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::snapshot {

struct StateRecord {
  std::string tag;
  uint32_t version = 0;
  std::vector<uint8_t> payload;
  bool operator==(const StateRecord&) const = default;
};

void append_record(std::vector<uint8_t>& file, const StateRecord& record);
std::vector<uint8_t> encode_records(const std::vector<StateRecord>& records);
// Refuses a truncated or damaged record, naming it (or its position when
// its tag cannot be trusted), and a tag that appears twice.
Result<std::vector<StateRecord>> decode_records(std::span<const uint8_t> file);

}  // namespace hostvisor::snapshot
